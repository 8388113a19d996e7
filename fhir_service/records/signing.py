"""A party's answer, in their own name, to a contract version put to them: the one way the JSON
facade (`CallerContracts.sign`) and the FHIR endpoint (``CarePlan/{id}/$sign``,
`fhir_service.records.careplan_operations`) both go.

Who answers is the token's: a patient's token answers as the patient, a clinician's (a person
acting for the unit) as the care's party; an EHR acting as a system is no person and signs
nothing (it records agreements given elsewhere, `ContractStore.agree`). Only the patient
declines, and only a decline carries a comment. A patient answers only a version put to them: a
draft that was not is not there for them, as a read answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from fhir_service.audit.witness import Witness
from fhir_service.contract import AgreementParty, Contract, Text, described, disclose
from fhir_service.errors import UnprocessableError, issue
from fhir_service.security.access import Access, AccessDeniedError, Denial
from fhir_service.store import Change, ContractNotFoundError, ContractStore

__all__ = ["WITHHELD", "Decision", "answer"]

Resource = dict[str, Any]

WITHHELD = "withheld from this reader: a draft, or labelled restricted"
"""Why a reader is told a contract is not there, as their audit record says it."""


_COMMENT: TypeAdapter[str] = TypeAdapter(Text)


class Decision(StrEnum):
    """A party's answer to the version put to them."""

    AGREE = "agree"
    DECLINE = "decline"


async def answer(
    store: ContractStore,
    access: Access,
    witness: Witness,
    change: Change,
    asked: tuple[str, int, Decision, str | None],
    where: Callable[[str], str],
) -> Contract:
    """The caller answers version ``version`` of contract ``contract_id`` (``asked``: the
    contract, the version, the decision and the comment); ``where`` names a part of the request
    (``decision``, ``comment``) in the caller's terms, for a refusal to point at."""
    contract_id, version, decision, comment = asked
    party = _party(access, witness)
    if decision is Decision.DECLINE and party is not AgreementParty.PATIENT:
        said = "only the patient declines; the care unit changes or revokes the contract"
        raise UnprocessableError(said, [issue(said, "business-rule", where("decision"))])
    if decision is Decision.AGREE and comment is not None:
        said = "a comment is the patient's reason to decline; an agreement carries none"
        raise UnprocessableError(said, [issue(said, "invalid", where("comment"))])
    if comment is not None:
        try:
            comment = _COMMENT.validate_python(comment)
        except ValidationError as exc:
            said = described(exc.errors(include_url=False)[0])
            raise UnprocessableError(said, [issue(said, "invalid", where("comment"))]) from None
    stored = await store.records(contract_id, change)
    if party is AgreementParty.PATIENT and disclose(stored.contract, None).contract is None:
        witness.saw_contract(stored.contract)
        witness.refused(WITHHELD)
        raise ContractNotFoundError(contract_id)
    if decision is Decision.DECLINE:
        return await store.decline(contract_id, version, comment, change, read=stored)
    return await store.sign(contract_id, version, party, change, read=stored)


def _party(access: Access, witness: Witness) -> AgreementParty:
    if access.leave is not None:
        # A relative reads and reports under the patient's leave; agreeing is the patient's.
        witness.refused(Denial.ONLY_THE_PATIENT_ACTS.value)
        raise AccessDeniedError(Denial.ONLY_THE_PATIENT_ACTS)
    if access.context == "patient":
        return AgreementParty.PATIENT
    if access.context == "user":
        return AgreementParty.RESPONSIBLE_CLINICIAN
    witness.refused(Denial.NOT_A_PERSON.value)
    raise AccessDeniedError(Denial.NOT_A_PERSON)
