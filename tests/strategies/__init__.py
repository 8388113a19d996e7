"""Hypothesis strategies: valid identifiers, and whole contracts built from them."""
