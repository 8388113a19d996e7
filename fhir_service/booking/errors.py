"""Why a booking is refused: its kinds of `fhir_service.errors`. A rule the booking breaks is
one of three: a patient's limit online, the state of the time or slot now, or a request that
does not fit."""

from __future__ import annotations

from fhir_service.errors import (
    ForbiddenError,
    RecordConflictError,
    RecordNotFoundError,
    UnprocessableError,
)

__all__ = [
    "DoesNotFitError",
    "NotBookableNowError",
    "NotOnlineError",
    "SlotNotFoundError",
    "SlotTakenError",
]


class SlotNotFoundError(RecordNotFoundError, LookupError):
    """No such Slot."""


class SlotTakenError(RecordConflictError):
    """The Slot was booked by someone else, or the time changed, since it was read."""

    title = "Slot taken"


class NotOnlineError(ForbiddenError):
    """A patient's limits: the time is not booked, changed or cancelled online (now)."""

    title = "Not allowed online"


class NotBookableNowError(RecordConflictError):
    """The state of the time, the slot or the contract does not allow it now."""

    title = "Conflict"


class DoesNotFitError(UnprocessableError):
    """The request does not fit: the slot is not of the time's unit or type, or not a time."""

    title = "Does not fit"
