"""Slots, book / cancel / rebook, and the care-guarantee rules."""

from fhir_service.booking.breaches import breaches, verdict_for
from fhir_service.booking.callers import offered, patient_side, shown_time, unit_of, unseen
from fhir_service.booking.online import OnlineChanges, online_changes
from fhir_service.booking.resources import PublishedTime
from fhir_service.booking.service import (
    Booked,
    BookingRefusedError,
    BookingService,
    SlotNotFoundError,
    SlotTakenError,
)
from fhir_service.booking.shown import AgreedTimeNotFoundError, NotShownError
from fhir_service.booking.template import Opening, TemplateTooLargeError, weekly_times

__all__ = [
    "AgreedTimeNotFoundError",
    "Booked",
    "BookingRefusedError",
    "BookingService",
    "NotShownError",
    "OnlineChanges",
    "Opening",
    "PublishedTime",
    "SlotNotFoundError",
    "SlotTakenError",
    "TemplateTooLargeError",
    "breaches",
    "offered",
    "online_changes",
    "patient_side",
    "shown_time",
    "unit_of",
    "unseen",
    "verdict_for",
    "weekly_times",
]
