"""Slots (`slots`), book / cancel / rebook (`service`), the care-guarantee rules, and what the
booking facades share about their caller (`callers`)."""

from fhir_service.booking.breaches import breaches, verdict_for
from fhir_service.booking.callers import offered, patient_side, shown_time, unit_of, unseen
from fhir_service.booking.catalogue import Defined, TimeTypeCatalogue
from fhir_service.booking.errors import (
    DoesNotFitError,
    NotBookableNowError,
    NotOnlineError,
    SlotNotFoundError,
    SlotTakenError,
)
from fhir_service.booking.online import OnlineChanges, online_changes, rules_of
from fhir_service.booking.resources import PublishedTime
from fhir_service.booking.seed import definitions as seed_definitions
from fhir_service.booking.seed import seed_forever
from fhir_service.booking.service import Booked, BookingService, release_lapsed_forever
from fhir_service.booking.shown import AgreedTimeNotFoundError, NotShownError
from fhir_service.booking.slots import BookableSlot, Published
from fhir_service.booking.template import Opening, TemplateTooLargeError, weekly_times

__all__ = [
    "AgreedTimeNotFoundError",
    "BookableSlot",
    "Booked",
    "BookingService",
    "Defined",
    "DoesNotFitError",
    "NotBookableNowError",
    "NotOnlineError",
    "NotShownError",
    "OnlineChanges",
    "Opening",
    "Published",
    "PublishedTime",
    "SlotNotFoundError",
    "SlotTakenError",
    "TemplateTooLargeError",
    "TimeTypeCatalogue",
    "breaches",
    "offered",
    "online_changes",
    "patient_side",
    "release_lapsed_forever",
    "rules_of",
    "seed_definitions",
    "seed_forever",
    "shown_time",
    "unit_of",
    "unseen",
    "verdict_for",
    "weekly_times",
]
