"""Slots, book / cancel / rebook, and the care-guarantee rules."""
