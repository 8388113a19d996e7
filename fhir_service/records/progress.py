"""How an activity goes, as a party reports it: the patient on their own activities, a relative on
theirs when the patient's leave allows it, the care unit on any of its contract's. A report sets
the activity's status with who said it, when and their note
(`fhir_service.contract.lifecycle.report_progress`); it needs no new agreement, and reaches the
unit's webhooks as any change of the CarePlan does.

A patient reports only on an activity they are shown and own: one withheld from them is not
there (404), another's is refused (403). Nothing else of the contract changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from fhir_service.audit.witness import Witness
from fhir_service.contract import (
    Activity,
    ActivityOwner,
    ActivityStatus,
    Contract,
    ProgressReport,
    Reporter,
    described,
    disclose,
    lifecycle,
)
from fhir_service.errors import RecordNotFoundError, UnprocessableError, issue
from fhir_service.records.signing import WITHHELD
from fhir_service.security.access import Access, AccessDeniedError, Denial
from fhir_service.store import Change, ContractNotFoundError, ContractStore

__all__ = ["ProgressAsked", "report"]

# A report may say when the activity was done, not when it will be: a little leeway for clocks.
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ProgressAsked:
    """A progress report as asked: the contract and activity, the status, the note, when (None:
    now) and the version it was based on (None: the contract as it now is)."""

    contract_id: str
    key: str
    status: ActivityStatus
    note: str | None = None
    at: datetime | None = None
    version: int | None = None


async def report(
    store: ContractStore,
    access: Access,
    witness: Witness,
    change: Change,
    asked: ProgressAsked,
    where: Callable[[str], str],
) -> Contract:
    """Record ``asked`` by the caller; ``where`` names a part of the request in their terms."""
    reporter = _reporter(access, witness)
    now = datetime.now(UTC)
    at = asked.at or now
    problems = []
    if asked.status not in lifecycle.REPORTED:
        said = f"progress is one of {', '.join(sorted(lifecycle.REPORTED))}"
        problems.append(issue(said, "code-invalid", where("status")))
    if at > now + _CLOCK_SKEW:
        problems.append(issue("is in the future: report what was done", "invalid", where("at")))
    try:
        progress = ProgressReport(reported_at=at, by=reporter, note=asked.note)
    except ValidationError as exc:
        said = described(exc.errors(include_url=False)[0])
        problems.append(issue(said, "invalid", where("note")))
    if problems:
        raise UnprocessableError("the progress report is not complete", problems)

    def theirs(contract: Contract) -> None:
        if reporter is not Reporter.CARE_UNIT:
            shown = disclose(contract, None).contract
            if shown is None:
                witness.saw_contract(contract)
                witness.refused(WITHHELD)
                raise ContractNotFoundError(contract.id)
            contract = shown
        activity = next((a for a in contract.activities if a.key == asked.key), None)
        if activity is None:
            raise RecordNotFoundError(f"contract {contract.id!r} has no activity {asked.key!r}")
        if reporter is not Reporter.CARE_UNIT and not _owns(access, contract, activity):
            witness.refused(Denial.NOT_THEIR_ACTIVITY.value)
            raise AccessDeniedError(Denial.NOT_THEIR_ACTIVITY)

    return await store.report_progress(
        asked.contract_id,
        asked.key,
        asked.status,
        progress,
        change,
        asked.version,
        check=theirs,
    )


def _reporter(access: Access, witness: Witness) -> Reporter:
    """Who reports: the unit, the patient, or a relative whose leave lets them report."""
    if access.context != "patient":
        return Reporter.CARE_UNIT
    if access.leave is None:
        return Reporter.PATIENT
    if not access.leave.may_report:
        witness.refused(Denial.NO_REPORTING.value)
        raise AccessDeniedError(Denial.NO_REPORTING)
    return Reporter.RELATIVE


def _owns(access: Access, contract: Contract, activity: Activity) -> bool:
    """Whether the patient, or the relative under their leave, owns ``activity``: a relative's
    is theirs when the contract names them by the identifier the leave names."""
    if access.leave is None:
        return activity.owner is ActivityOwner.PATIENT
    if activity.owner is not ActivityOwner.RELATIVE or access.leave.relative is None:
        return False
    named = next((r for r in contract.relatives if r.key == activity.relative), None)
    return named is not None and named.identifier == access.leave.relative
