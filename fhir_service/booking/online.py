"""What a patient may still do online with a booked time: the clinic's rules for its time type,
and the cut-off before it starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir_service.contract import AgreedTime, AgreedTimeStatus
from fhir_service.mapping.time_types import time_types

__all__ = ["OnlineChanges", "online_changes"]


@dataclass(frozen=True, slots=True)
class OnlineChanges:
    """Which changes the patient may make online to a booked time, and until when."""

    cancel: bool
    rebook: bool
    until: datetime


def online_changes(time: AgreedTime, now: datetime) -> OnlineChanges | None:
    """What the patient may still do online with ``time`` at ``now``; None when nothing (not
    booked, a type the clinic changes itself, or past the cut-off)."""
    if time.status is not AgreedTimeStatus.BOOKED or time.start is None or not time.time_type:
        return None
    kind = time_types(time.organization.identifier).get(time.time_type)
    if kind is None or not (kind.patient.cancel or kind.patient.rebook):
        return None
    until = time.start - kind.cancel_cutoff
    if now > until:
        return None
    return OnlineChanges(cancel=kind.patient.cancel, rebook=kind.patient.rebook, until=until)
