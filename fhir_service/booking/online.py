"""What a patient may still do online with a booked time: the clinic's rules it was booked under
(or, for a time booked elsewhere, its time type's now), and the cut-off before it starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir_service.contract import AgreedTime, AgreedTimeStatus, OnlineRules, TimeTypes

__all__ = ["OnlineChanges", "online_changes", "rules_of"]


@dataclass(frozen=True, slots=True)
class OnlineChanges:
    """Which changes the patient may make online to a booked time, and until when."""

    cancel: bool
    rebook: bool
    until: datetime


def rules_of(time: AgreedTime, types: TimeTypes) -> OnlineRules | None:
    """The online rules ``time`` keeps: those it was booked under, else (a time booked in the
    clinic's own system) its time type's as defined now; None without a known type."""
    if time.online_rules is not None:
        return time.online_rules
    kind = types.known(time.organization.identifier).get(time.time_type or "")
    return None if kind is None else kind.online_rules


def online_changes(
    time: AgreedTime, now: datetime, rules: OnlineRules | None
) -> OnlineChanges | None:
    """What the patient may still do online with ``time`` at ``now`` under ``rules`` (its
    `rules_of`); None when nothing (not booked, a type the clinic changes itself, or past the
    cut-off)."""
    if time.status is not AgreedTimeStatus.BOOKED or time.start is None or not time.time_type:
        return None
    if rules is None or not (rules.cancel or rules.rebook):
        return None
    until = time.start - rules.cancel_cutoff
    if now > until:
        return None
    return OnlineChanges(cancel=rules.cancel, rebook=rules.rebook, until=until)
