"""The patient's proposals: a change they ask for in their own words, and the care unit's answer.

The patient proposes a goal, a resource or a wish of their own, a change of a goal, or a change of
an activity or an agreed time (naming it, among what they are shown). A proposal changes no term
of the contract: it needs no new agreement, and stays with the contract, open, until the unit
takes it into a version or declines it with a reason the patient reads. Both are changes of the
CarePlan, so they reach the webhooks, and are on record as their author's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from fhir_service.audit.witness import Witness
from fhir_service.contract import (
    Contract,
    Proposal,
    ProposalKind,
    ProposalStatus,
    described,
    disclose,
)
from fhir_service.errors import RecordNotFoundError, UnprocessableError, issue
from fhir_service.records.signing import WITHHELD
from fhir_service.security.access import Access, AccessDeniedError, Denial
from fhir_service.store import Change, ContractNotFoundError, ContractStore

__all__ = ["ProposalAsked", "add", "answer"]


@dataclass(frozen=True, slots=True)
class ProposalAsked:
    """A proposal as the patient asked it, on contract ``contract_id``."""

    contract_id: str
    kind: ProposalKind
    text: str
    about: str | None = None
    version: int | None = None


async def add(
    store: ContractStore,
    access: Access,
    witness: Witness,
    change: Change,
    asked: ProposalAsked,
    where: Callable[[str], str],
) -> Contract:
    """The patient's proposal ``asked``; ``where`` names a part of the request in their terms."""
    if access.context != "patient":
        witness.refused(Denial.ONLY_THE_PATIENT.value)
        raise AccessDeniedError(Denial.ONLY_THE_PATIENT)
    if access.leave is not None:
        witness.refused(Denial.ONLY_THE_PATIENT_ACTS.value)
        raise AccessDeniedError(Denial.ONLY_THE_PATIENT_ACTS)
    try:
        proposal = Proposal(
            key=uuid.uuid4().hex[:12],
            kind=asked.kind,
            text=asked.text,
            about=asked.about,
            proposed_at=datetime.now(UTC),
        )
    except ValidationError as exc:
        problems = [
            issue(described(e), "invalid", where(str(e["loc"][0]) if e["loc"] else "about"))
            for e in exc.errors(include_url=False)
        ]
        raise UnprocessableError("the proposal is not complete", problems) from None

    def shown_to_them(contract: Contract) -> None:
        shown = disclose(contract, None).contract
        if shown is None:
            witness.saw_contract(contract)
            witness.refused(WITHHELD)
            raise ContractNotFoundError(contract.id)
        if asked.about is not None and asked.about not in _keys(shown, asked.kind):
            said = f"this contract shows you no {asked.kind} {asked.about!r}"
            raise UnprocessableError(said, [issue(said, "not-found", where("about"))])

    return await store.add_proposal(
        asked.contract_id, proposal, change, asked.version, check=shown_to_them
    )


async def answer(
    store: ContractStore,
    change: Change,
    asked: tuple[str, str, ProposalStatus, str | None],
    version: int | None,
    where: Callable[[str], str],
) -> Contract:
    """The care unit's answer to a proposal (``asked``: the contract, the proposal's key, taken
    or declined, and the reason of a decline)."""
    contract_id, key, status, reason = asked
    if status is ProposalStatus.OPEN:
        said = "a proposal is answered taken or declined"
        raise UnprocessableError(said, [issue(said, "invalid", where("decision"))])
    if (status is ProposalStatus.DECLINED) != (reason is not None):
        said = "a decline says why, for the patient to read; a proposal taken needs no reason"
        raise UnprocessableError(said, [issue(said, "required", where("reason"))])
    try:
        return await store.answer_proposal(contract_id, key, status, reason, change, version)
    except KeyError:
        raise RecordNotFoundError(f"contract {contract_id!r} has no proposal {key!r}") from None


def _keys(contract: Contract, kind: ProposalKind) -> set[str]:
    if kind is ProposalKind.GOAL:
        return {g.key for g in contract.goals}
    if kind is ProposalKind.ACTIVITY:
        return {a.key for a in contract.activities}
    return {t.key for t in contract.agreed_times}
