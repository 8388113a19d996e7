"""Which of a contract's agreed times break its care guarantee, and how a time would stand.

A contract may say where the patient is on their way into care (``care_guarantee``: the step
waited for, since when). Its agreed times of a time type that counts towards that step
(its ``care_guarantee_step``, as its care unit defined it) must happen by the step's
deadline: a booked time after it breaks the guarantee, and so does a time still not booked once
the deadline has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir_service.booking.guarantee import verdict
from fhir_service.contract import (
    AgreedTime,
    AgreedTimeStatus,
    Contract,
    GuaranteeVerdict,
    TimeTypes,
)

__all__ = ["Breach", "breaches", "verdict_for"]


@dataclass(frozen=True, slots=True)
class Breach:
    """An agreed time of ``contract_id`` that breaks its care guarantee."""

    contract_id: str
    time: AgreedTime
    verdict: GuaranteeVerdict
    booked: bool


def verdict_for(
    contract: Contract, time: AgreedTime, start: datetime, types: TimeTypes
) -> GuaranteeVerdict | None:
    """How ``time`` (of the contract) would stand at ``start`` against the contract's care
    guarantee; None when the contract has none or the time's type does not count towards it."""
    case = contract.care_guarantee
    if case is None or time.time_type is None:
        return None
    kind = types.known(time.organization.identifier).get(time.time_type)
    if kind is None or kind.care_guarantee_step != case.step:
        return None
    try:
        found = verdict(case.jurisdiction, case.step, case.since, start, individual=case.deadline)
    except ValueError:
        # A case written around this service that the rules cannot judge (a step unknown here,
        # a deadline missing or before the count): no verdict rather than a failed booking.
        return None
    return GuaranteeVerdict(deadline=found.deadline, late=found.late, days_over=found.days_over)


def breaches(contract: Contract, now: datetime, types: TimeTypes) -> list[Breach]:
    """The agreed times of ``contract`` that break its care guarantee at ``now``."""
    found = []
    for time in contract.agreed_times:
        if time.status is AgreedTimeStatus.BOOKED and time.start is not None:
            judged = verdict_for(contract, time, time.start, types)
            if judged is not None and judged.late:
                found.append(Breach(contract.id, time, judged, booked=True))
        elif time.status is AgreedTimeStatus.PROPOSED:
            judged = verdict_for(contract, time, now, types)
            if judged is not None and judged.late:
                found.append(Breach(contract.id, time, judged, booked=False))
    return found
