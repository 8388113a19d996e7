"""Times booked in a published slot change through the booking facade only.

The booking facade keeps a booked time and its Slot in step (the Slot busy while the time holds
it). A contract's own edits must not move, unbook or drop such a time, or its Slot would stay
busy for nobody; they may record what happened at the time (fulfilled, no-show).
"""

from __future__ import annotations

from fhir_service.contract.model import Contract
from fhir_service.contract.vocabulary import AgreedTimeStatus

__all__ = ["changed_bookings"]

_AFTER_THE_TIME = frozenset(
    {AgreedTimeStatus.BOOKED, AgreedTimeStatus.FULFILLED, AgreedTimeStatus.NOSHOW}
)


def changed_bookings(current: Contract, new: Contract) -> list[str]:
    """Keys of ``current``'s slot-booked times that ``new`` drops, moves or unbooks."""
    kept = {t.key: t for t in new.agreed_times}
    changed = []
    for time in current.agreed_times:
        if time.slot is None or time.status is not AgreedTimeStatus.BOOKED:
            continue
        after = kept.get(time.key)
        if (
            after is None
            or (after.slot, after.start, after.end) != (time.slot, time.start, time.end)
            or after.status not in _AFTER_THE_TIME
        ):
            changed.append(time.key)
    return changed
