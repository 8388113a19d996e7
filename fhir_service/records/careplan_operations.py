"""A contract's lifecycle and its parties' acts as the FHIR endpoint asks them: operations on
the contract's CarePlan, each the same call the JSON facade makes, with the CarePlan as stored
after as the answer.

- ``$propose``: the unit puts the version ``If-Match`` names to the patient;
- ``$sign``: a party answers it in their own name (`fhir_service.records.signing`);
- ``$progress``: how an activity goes (`fhir_service.records.progress`);
- ``$proposal``: the patient proposes a change (`fhir_service.records.proposals`).

A refusal points at the ``Parameters`` parameter in the caller's terms.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from fhir_service.contract import ActivityStatus, ProposalKind
from fhir_service.errors import InvalidRequestError, UnprocessableError, issue
from fhir_service.mapping.ownership import contract_of
from fhir_service.records.changes import required_version
from fhir_service.records.progress import ProgressAsked, report
from fhir_service.records.proposals import ProposalAsked, add
from fhir_service.records.reads import CallerReads
from fhir_service.records.signing import Decision, answer

__all__ = ["progress_careplan", "proposal_careplan", "propose_careplan", "sign_careplan"]

Resource = dict[str, Any]
Said = dict[str, str | None]
"""The operation's parameters as the caller gave them, by name."""


async def propose_careplan(
    records: CallerReads, careplan_id: str, if_match: str | None
) -> Resource:
    """``$propose``: put the version ``If-Match`` names to the patient."""
    version = required_version(if_match)
    contract_id = await _contract_of(records, careplan_id)
    await records.store.propose(contract_id, version, records.change)
    return await records.read("CarePlan", careplan_id)


async def sign_careplan(
    records: CallerReads, careplan_id: str, said: Said, if_match: str | None
) -> Resource:
    """``$sign``: answer the version ``If-Match`` names with ``decision`` and ``comment``."""
    version = required_version(if_match)
    decision = _code(Decision, said.get("decision"), "decision", "agree or decline")
    contract_id = await _contract_of(records, careplan_id)
    asked = (contract_id, version, decision, said.get("comment"))
    await answer(records.store, records.access, records.witness, records.change, asked, _parameter)
    return await records.read("CarePlan", careplan_id)


async def progress_careplan(
    records: CallerReads, careplan_id: str, said: Said, if_match: str | None
) -> Resource:
    """``$progress``: how the activity ``activity`` goes (``status``, ``note``, ``at``);
    ``If-Match`` is optional, as on the JSON facade."""
    version = None if if_match is None else required_version(if_match)
    status = _code(ActivityStatus, said.get("status"), "status", "a status of the activity")
    key = said.get("activity")
    if not key:
        words = "the activity parameter names the activity, by its id in the CarePlan"
        raise InvalidRequestError(words, [issue(words, "required", _parameter("activity"))])
    at = _instant(said.get("at"))
    contract_id = await _contract_of(records, careplan_id)
    asked = ProgressAsked(contract_id, key, status, said.get("note"), at, version)
    await report(records.store, records.access, records.witness, records.change, asked, _parameter)
    return await records.read("CarePlan", careplan_id)


async def proposal_careplan(
    records: CallerReads, careplan_id: str, said: Said, if_match: str | None
) -> Resource:
    """``$proposal``: the patient asks for a change (``kind``, ``text``, ``about``)."""
    version = None if if_match is None else required_version(if_match)
    kind = _code(ProposalKind, said.get("kind"), "kind", "goal, resource, wish, activity or time")
    text = said.get("text")
    if not text:
        words = "the text parameter holds the proposal, in the patient's own words"
        raise InvalidRequestError(words, [issue(words, "required", _parameter("text"))])
    contract_id = await _contract_of(records, careplan_id)
    asked = ProposalAsked(contract_id, kind, text, said.get("about"), version)
    await add(records.store, records.access, records.witness, records.change, asked, _parameter)
    return await records.read("CarePlan", careplan_id)


async def _contract_of(records: CallerReads, careplan_id: str) -> str:
    """The contract whose CarePlan ``careplan_id`` is, as the caller may see it."""
    careplan = await records.read("CarePlan", careplan_id)
    contract_id = contract_of(careplan)
    if contract_id is None:
        words = "this CarePlan is no patient contract of ours"
        raise UnprocessableError(words, [issue(words, "business-rule", "CarePlan.identifier")])
    return contract_id


_Code = TypeVar("_Code", Decision, ActivityStatus, ProposalKind)


def _code(codes: type[_Code], given: str | None, name: str, what: str) -> _Code:
    found = next((c for c in codes if c.value == given), None)
    if found is None:
        words = f"the {name} parameter is {what}"
        raise InvalidRequestError(words, [issue(words, "required", _parameter(name))])
    return found


def _instant(given: str | None) -> datetime | None:
    if given is None:
        return None
    try:
        at = datetime.fromisoformat(given)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        words = "the at parameter is a dateTime with its time zone"
        raise InvalidRequestError(words, [issue(words, "invalid", _parameter("at"))])
    return at


def _parameter(name: str) -> str:
    return f"Parameters.parameter.where(name = '{name}')"
