"""How an activity goes, as a party reports it: the patient on their own activities, the care
unit on any of its contract's. A report sets the activity's status with who said it, when and
their note (`fhir_service.contract.lifecycle.report_progress`); it needs no new agreement, and
reaches the unit's webhooks as any change of the CarePlan does.

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
    reporter = Reporter.PATIENT if access.context == "patient" else Reporter.CARE_UNIT
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
        if reporter is Reporter.PATIENT:
            shown = disclose(contract, None).contract
            if shown is None:
                witness.saw_contract(contract)
                witness.refused(WITHHELD)
                raise ContractNotFoundError(contract.id)
            contract = shown
        activity = next((a for a in contract.activities if a.key == asked.key), None)
        if activity is None:
            raise RecordNotFoundError(f"contract {contract.id!r} has no activity {asked.key!r}")
        if reporter is Reporter.PATIENT and activity.owner is not ActivityOwner.PATIENT:
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
