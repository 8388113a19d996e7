"""Times booked or held in a published slot change through the booking facades only.

The booking facades keep a booked or held time and its Slot in step (the Slot busy, or
busy-tentative, while the time holds it). A contract's own edits must not move, unbook, release
or drop such a time, or its Slot would stay taken for nobody; they may record what happened at a
booked time (fulfilled, no-show). Nor do they hold a time: a hold is Appointment/$hold's.
"""

from __future__ import annotations

from fhir_service.contract.model import Contract
from fhir_service.contract.vocabulary import AgreedTimeStatus

__all__ = ["changed_bookings"]

_AFTER_THE_TIME = frozenset(
    {AgreedTimeStatus.BOOKED, AgreedTimeStatus.FULFILLED, AgreedTimeStatus.NOSHOW}
)
_TAKEN = frozenset({AgreedTimeStatus.BOOKED, AgreedTimeStatus.PENDING})


def changed_bookings(current: Contract | None, new: Contract) -> list[str]:
    """Keys of ``current``'s slot-booked or held times that ``new`` drops, moves, unbooks or
    releases, and of times ``new`` holds that ``current`` (None: a new contract) did not."""
    kept = {t.key: t for t in new.agreed_times}
    before = {} if current is None else {t.key: t for t in current.agreed_times}
    changed = []
    for time in before.values():
        if time.slot is None or time.status not in _TAKEN:
            continue
        after = kept.get(time.key)
        if (
            after is None
            or (after.slot, after.start, after.end) != (time.slot, time.start, time.end)
            or (time.status is AgreedTimeStatus.BOOKED and after.status not in _AFTER_THE_TIME)
            or (
                time.status is AgreedTimeStatus.PENDING
                and (after.status, after.hold) != (time.status, time.hold)
            )
        ):
            changed.append(time.key)
    for time in new.agreed_times:
        held = before.get(time.key)
        if time.status is AgreedTimeStatus.PENDING and (
            held is None or (held.status, held.hold) != (time.status, time.hold)
        ):
            changed.append(time.key)
    return list(dict.fromkeys(changed))
