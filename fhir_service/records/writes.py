"""One record of a contract, changed (FHIR update) or added (create).

A record is part of its contract, so writing one changes the contract. The record names its
contract by its identifier (our system for its type, ``<contract id>/<key>``); it is validated
against our profiles, put in place of the stored one (or beside the others, for a new Goal,
Appointment or care contact's CareTeam), and the contract the records now make is stored as any
change is: one transaction with its Provenance, at the version read. The answer is the record as
stored, so the writer sees what the contract kept of it.

An update may name the record's version it changes (``If-Match``; a mismatch is refused); without
one, as in HAPI, it changes the current one. A create with a condition (``If-None-Exist``)
answers the one record it finds instead of adding one. A record's identifier is its key in the
contract and does not change. A CarePlan is updated, not created: a contract is created as a
transaction Bundle of its records. Writing a record changes a contract, so it needs the right to
change contracts (``CarePlan.u``) besides the right to write the record's type.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any

from fhir_service.contract import ContractStatus
from fhir_service.errors import (
    ForbiddenError,
    InvalidRequestError,
    PreconditionFailedError,
    RecordConflictError,
    RecordNotFoundError,
    UnprocessableError,
    issue,
)
from fhir_service.mapping import urls
from fhir_service.mapping.codes import unknown_codes
from fhir_service.mapping.from_fhir import UnreadableContractError, contract_from_bundle
from fhir_service.mapping.ownership import CONTRACT_SYSTEMS, patient_references
from fhir_service.mapping.time_types import named_time_types, unknown_time_types
from fhir_service.records.changes import etag_version, profile_issues, step_to
from fhir_service.records.reads import CallerReads
from fhir_service.security.access import AccessDeniedError, Requirement, decide
from fhir_service.store import StoredContract

__all__ = ["Written", "create_record", "update_record"]

Resource = dict[str, Any]
Params = list[tuple[str, str]]

_CARE_CONTACT = "care-contact/"


@dataclass(frozen=True, slots=True)
class Written:
    """A record as a write left it, and whether the write created it."""

    resource: Resource
    created: bool


def _at(expression: str, diagnostics: str, code: str = "processing") -> Resource:
    return issue(diagnostics, code, expression)


async def update_record(
    records: CallerReads, kind: str, rid: str, resource: Resource, if_match: str | None
) -> Written:
    """Put ``resource`` in place of ``kind/rid``, at the version ``if_match`` names if it
    names one; the record as stored afterwards."""
    await _checked(records, kind, resource)
    if resource.get("id") != rid:
        raise InvalidRequestError(
            f"the body's id is not {rid!r}", [_at(f"{kind}.id", f"is not {rid!r}", "invalid")]
        )
    contract_id, key = _contract_key(kind, resource)
    stored = await records.store.records(contract_id, records.change)
    before = _record(stored.bundle, kind, rid=rid)
    if before is None:
        raise RecordNotFoundError(f"contract {contract_id!r} has no {kind}/{rid}")
    if _contract_key(kind, before) != (contract_id, key):
        raise UnprocessableError(
            "a record's identifier is its key in the contract: it stays",
            [_at(f"{kind}.identifier", "is the record's key in its contract: it stays")],
        )
    version = before.get("meta", {}).get("versionId")
    if if_match is not None and str(etag_version(if_match)) != version:
        stale = (
            f'{kind}/{rid} is at version {version} (If-Match: W/"{version}"), not {if_match}: '
            "read it again"
        )
        raise PreconditionFailedError(stale, [issue(stale, "conflict", "If-Match")])
    _foreign_patient(resource, stored)
    record = _versioned(resource, version)
    await _store(records, stored, _replaced(stored.bundle, kind, rid, record))
    return Written(await records.read(kind, rid), created=False)


async def create_record(
    records: CallerReads, kind: str, resource: Resource, condition: Params | None
) -> Written:
    """Add ``resource`` to its contract; with a ``condition`` (``If-None-Exist``), the one
    record it finds is the answer instead."""
    await _checked(records, kind, resource)
    if condition is not None:
        matches = (await records.search(kind, [*condition, ("_count", "2")])).get("entry", [])
        found = [e["resource"] for e in matches if e.get("search", {}).get("mode") == "match"]
        if len(found) > 1:
            raise PreconditionFailedError(
                "If-None-Exist finds more than one record: make the condition narrower",
                [issue("finds more than one record", "multiple-matches", "If-None-Exist")],
            )
        if found:
            return Written(found[0], created=False)
    # A create's id and version are the server's to give.
    meta = {
        k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")
    }
    resource = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    if meta:
        resource["meta"] = meta
    contract_id, key = _contract_key(kind, resource)
    stored = await records.store.records(contract_id, records.change)
    value = f"{contract_id}/{key}"
    existing = _record(stored.bundle, kind, key=value)
    if existing is not None:
        raise RecordConflictError(
            f"{kind}/{existing['id']} is {value}: update it instead",
            [issue(f"{kind}/{existing['id']} is {value}: update it instead", "duplicate")],
        )
    if kind == "CareTeam":
        wanted = f"{_CARE_CONTACT}{len(stored.contract.care_contacts)}"
        if key != wanted:
            raise UnprocessableError(
                f"a new care contact's CareTeam is {contract_id}/{wanted}",
                [_at("CareTeam.identifier", f"a new care contact's is {contract_id}/{wanted}")],
            )
    _foreign_patient(resource, stored)
    await _store(records, stored, _added(stored.bundle, resource))
    page = await records.search(kind, [("identifier", f"{CONTRACT_SYSTEMS[kind]}|{value}")])
    return Written(page["entry"][0]["resource"], created=True)


async def _checked(records: CallerReads, kind: str, resource: Resource) -> None:
    """Refuse ``resource`` unless the caller may change contracts, it is a ``kind`` and our
    profiles take it."""
    access = records.access
    try:
        decide(access.principal, Requirement("CarePlan", "u"), access.compartment.patient)
    except AccessDeniedError as exc:
        records.witness.refused(exc.denial.value)
        raise ForbiddenError(exc.denial.value) from exc
    if resource.get("resourceType") != kind:
        raise InvalidRequestError(
            f"the body is a {resource.get('resourceType')!r}, not a {kind}",
            [_at("resourceType", f"is not {kind}", "invalid")],
        )
    problems = await profile_issues(records.hapi, resource)
    if problems:
        raise UnprocessableError("the record does not conform to its profile", problems)


def _contract_key(kind: str, resource: Resource) -> tuple[str, str]:
    """The contract id and the record's key in it, from the record's identifier."""
    system = CONTRACT_SYSTEMS[kind]
    values = [
        i.get("value")
        for i in resource.get("identifier", [])
        if isinstance(i, dict) and i.get("system") == system
    ]
    if len(values) != 1 or not isinstance(values[0], str):
        raise UnprocessableError(
            f"a {kind} of a contract carries one identifier of system {system} whose value is "
            "<contract id>/<key>",
            [_at(f"{kind}.identifier", "the record's key in its contract", "required")],
        )
    contract_id, _, key = values[0].partition("/")
    return contract_id, key


def _foreign_patient(resource: Resource, stored: StoredContract) -> None:
    careplan = _careplan(stored.bundle)
    ours = careplan.get("subject", {}).get("reference")
    others = patient_references(resource) - {ours}
    if others:
        raise UnprocessableError(
            f"the {resource['resourceType']} names a patient not the contract's"
        )


def _careplan(bundle: Resource) -> Resource:
    """The contract's CarePlan: the one match of the search its records were read with."""
    return next(
        e["resource"] for e in bundle["entry"] if e.get("search", {}).get("mode") == "match"
    )


def _record(
    bundle: Resource, kind: str, *, rid: str | None = None, key: str | None = None
) -> Resource | None:
    """The stored record of ``kind`` with id ``rid`` or identifier value ``key``; None."""
    system = CONTRACT_SYSTEMS[kind]
    for entry in bundle["entry"]:
        resource: Resource = entry.get("resource", {})
        if resource.get("resourceType") != kind:
            continue
        if rid is not None and resource.get("id") == rid:
            return resource
        values = {
            i.get("value") for i in resource.get("identifier", []) if i.get("system") == system
        }
        if key is not None and key in values:
            return resource
    return None


def _versioned(resource: Resource, version: str) -> Resource:
    """``resource`` as it will be read among the stored records.

    The agreement of an agreed CarePlan is found by the version it names, so one that stays
    agreed keeps the stored version; one leaving agreement names none and leaves it behind.
    """
    meta = {k: v for k, v in resource.get("meta", {}).items() if k != "versionId"}
    statuses = [
        e.get("valueCoding", {}).get("code")
        for e in resource.get("extension", [])
        if e.get("url") == urls.EXT_CONTRACT_STATUS
    ]
    if statuses == [ContractStatus.AGREED.value]:
        meta["versionId"] = version
    return {**resource, "meta": meta}


def _replaced(bundle: Resource, kind: str, rid: str, resource: Resource) -> Resource:
    """``bundle`` with ``resource`` in place of the stored ``kind/rid``."""
    entries = [
        {**e, "resource": resource}
        if e.get("resource", {}).get("resourceType") == kind and e["resource"].get("id") == rid
        else e
        for e in bundle["entry"]
    ]
    return {**bundle, "entry": entries}


def _added(bundle: Resource, resource: Resource) -> Resource:
    """``bundle`` with ``resource`` as a new record, which the CarePlan now names."""
    url = f"urn:uuid:{uuid.uuid4()}"
    careplan = copy.deepcopy(_careplan(bundle))
    reference = {"reference": url}
    kind = resource["resourceType"]
    if kind == "Goal":
        careplan.setdefault("goal", []).append(reference)
    elif kind == "Appointment":
        careplan.setdefault("activity", []).append({"reference": reference})
    else:
        careplan.setdefault("careTeam", []).append(reference)
    entries = [
        {**e, "resource": careplan} if e.get("search", {}).get("mode") == "match" else e
        for e in bundle["entry"]
    ]
    return {**bundle, "entry": [*entries, {"fullUrl": url, "resource": resource}]}


async def _store(records: CallerReads, stored: StoredContract, bundle: Resource) -> None:
    """Store the contract ``bundle``'s records make, in place of ``stored``."""
    try:
        wanted = contract_from_bundle(bundle, stored.contract.id, sent=True)
    except UnreadableContractError as exc:
        raise UnprocessableError(f"the contract cannot take it: {exc}") from exc
    types = await records.booking.catalogue.current(knowing=named_time_types(wanted))
    codes = unknown_codes(wanted) + unknown_time_types(wanted, types)
    if codes:
        raise UnprocessableError(
            "; ".join(f"{p}: {m}" for p, m in codes),
            [_at(p, m, "code-invalid") for p, m in codes],
        )
    records.saw_contract(wanted)
    version = stored.contract.version
    if version is None:
        raise ValueError(f"contract {stored.contract.id!r} was read without a version")
    written = await step_to(records.store, stored, wanted, version, records.change)
    records.saw_contract(written)
