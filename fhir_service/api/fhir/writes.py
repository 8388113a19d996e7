"""``PUT /fhir/{type}/{id}`` and ``POST /fhir/{type}``: one record of a contract, changed or added.

A record is part of its contract, so writing one changes the contract. The record names its
contract by its identifier (our system for its type, ``<contract id>/<key>``); it is validated
against our profiles, put in place of the stored one (or beside the others, for a new Goal,
Appointment or care contact's CareTeam), and the contract the records now make is stored as any
change is: one transaction with its Provenance, at the version read. The answer is the record as
stored, so the writer sees what the contract kept of it.

An update may name the record's version it changes in ``If-Match`` (412 when it is not the
current one); without it, as in HAPI, it changes the current one. A create with
``If-None-Exist`` answers the one record its condition finds (200) instead of adding one. A
record's identifier is its key in the contract and does not change. A CarePlan is updated, not
created: a contract is created as a transaction Bundle of its records (``POST /fhir``).
Writing a record changes a contract, so it needs the right to change contracts
(``CarePlan.u``) besides the right to write the record's type.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Request, Response

from fhir_service.api.audit_trail import AuditTrail, change_by
from fhir_service.api.deps import AccessDep, AuditTrailDep, HapiClientDep, StoreDep
from fhir_service.api.fhir.bodies import BodyError, fhir_body
from fhir_service.api.fhir.changes import (
    etag_version,
    profile_errors,
    step_to,
    stored_or_refused,
)
from fhir_service.api.fhir.outcomes import FHIR_JSON, outcome
from fhir_service.api.fhir.routes import answer, guarded_resource
from fhir_service.api.fhir.types import INTERACTIONS, route_name
from fhir_service.contract import ContractStatus
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.codes import unknown_codes
from fhir_service.mapping.from_fhir import UnreadableContractError, contract_from_bundle
from fhir_service.mapping.ownership import CONTRACT_SYSTEMS, patient_references
from fhir_service.security.access import Access, AccessDeniedError, Requirement, decide
from fhir_service.sync.store import ContractStore, StoredContract

__all__ = ["router"]

Resource = dict[str, Any]

router = APIRouter(prefix="/fhir", tags=["fhir"])

ResourceId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The resource's logical id.")
]

_CARE_CONTACT = "care-contact/"


class _RefusedError(Exception):
    """The record cannot be written: ``status`` and FHIR issue ``code`` say how, the text why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _contract_key(kind: str, resource: Resource) -> tuple[str, str]:
    """The contract id and the record's key in it, from the record's identifier."""
    system = CONTRACT_SYSTEMS[kind]
    values = [
        i.get("value")
        for i in resource.get("identifier", [])
        if isinstance(i, dict) and i.get("system") == system
    ]
    if len(values) != 1 or not isinstance(values[0], str):
        raise _RefusedError(
            422,
            "required",
            f"a {kind} of a contract carries one identifier of system {system} whose value is "
            "<contract id>/<key>",
        )
    contract_id, _, key = values[0].partition("/")
    return contract_id, key


def _foreign_patient(resource: Resource, stored: StoredContract) -> None:
    careplan = _careplan(stored.bundle)
    ours = careplan.get("subject", {}).get("reference")
    others = patient_references(resource) - {ours}
    if others:
        raise _RefusedError(
            422, "processing", f"the {resource['resourceType']} names a patient not the contract's"
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


async def _store(
    store: ContractStore,
    access: Access,
    trail: AuditTrail,
    stored: StoredContract,
    bundle: Resource,
) -> None:
    """Store the contract ``bundle``'s records make, in place of ``stored``."""
    try:
        wanted = contract_from_bundle(bundle, stored.contract.id, sent=True)
    except UnreadableContractError as exc:
        raise _RefusedError(422, "processing", f"the contract cannot take it: {exc}") from None
    codes = unknown_codes(wanted)
    if codes:
        raise _RefusedError(422, "code-invalid", "; ".join(f"{p}: {m}" for p, m in codes))
    trail.saw_contract(wanted)
    version = stored.contract.version
    if version is None:
        raise ValueError(f"contract {stored.contract.id!r} was read without a version")
    written = await step_to(store, stored, wanted, version, change_by(access, trail))
    trail.saw_contract(written)


async def _checked(
    kind: str, request: Request, hapi: HapiClient, access: Access, trail: AuditTrail
) -> Resource:
    """The request's record, once it is one we may write and our profiles take it."""
    try:
        decide(access.principal, Requirement("CarePlan", "u"), access.compartment.patient)
    except AccessDeniedError as exc:
        trail.refused(exc.denial.value)
        raise _RefusedError(403, "forbidden", exc.denial.value) from None
    try:
        resource = await fhir_body(request)
    except BodyError as exc:
        raise _RefusedError(exc.status, exc.code, str(exc)) from None
    if resource.get("resourceType") != kind:
        raise _RefusedError(
            400, "invalid", f"the body is a {resource.get('resourceType')!r}, not a {kind}"
        )
    problems = await profile_errors(hapi, resource)
    if problems:
        raise _RefusedError(422, "invariant", "; ".join(problems[:5]))
    return resource


async def _write(trail: AuditTrail, work: Callable[[], Awaitable[Response]]) -> Response:
    async def refusing() -> Response:
        try:
            return await work()
        except _RefusedError as exc:
            return outcome(exc.status, exc.code, str(exc))

    return await stored_or_refused(trail, refusing)


def _add_routes(kind: str) -> None:
    offered = INTERACTIONS[kind]

    async def update(
        resource_id: ResourceId,
        request: Request,
        hapi: HapiClientDep,
        store: StoreDep,
        access: AccessDep,
        trail: AuditTrailDep,
    ) -> Response:
        async def work() -> Response:
            resource = await _checked(kind, request, hapi, access, trail)
            if resource.get("id") != resource_id:
                raise _RefusedError(400, "invalid", f"the body's id is not {resource_id!r}")
            asked = request.headers.get("if-match")
            contract_id, key = _contract_key(kind, resource)
            stored = await store.records(contract_id, change_by(access, trail))
            before = _record(stored.bundle, kind, rid=resource_id)
            if before is None:
                raise _RefusedError(
                    404, "not-found", f"contract {contract_id!r} has no {kind}/{resource_id}"
                )
            if _contract_key(kind, before) != (contract_id, key):
                raise _RefusedError(
                    422, "processing", "a record's identifier is its key in the contract: it stays"
                )
            version = before.get("meta", {}).get("versionId")
            if asked is not None and str(etag_version(asked)) != version:
                raise _RefusedError(
                    412,
                    "conflict",
                    f'{kind}/{resource_id} is at version {version} (If-Match: W/"{version}"), '
                    f"not {asked}: read it again",
                )
            _foreign_patient(resource, stored)
            record = _versioned(resource, version)
            await _store(
                store, access, trail, stored, _replaced(stored.bundle, kind, resource_id, record)
            )
            return await guarded_resource(
                request, hapi, access, trail, await hapi.read(kind, resource_id)
            )

        return await answer(request, lambda: _write(trail, work))

    async def create(
        request: Request,
        hapi: HapiClientDep,
        store: StoreDep,
        access: AccessDep,
        trail: AuditTrailDep,
    ) -> Response:
        async def work() -> Response:
            resource = await _checked(kind, request, hapi, access, trail)
            condition = request.headers.get("if-none-exist")
            if condition is not None:
                # A conditional create: the record the condition finds is the answer (200).
                asked = parse_qsl(condition.removeprefix("?"), keep_blank_values=True)
                matches = (await hapi.search(kind, asked, max_pages=1)).matches()
                if len(matches) > 1:
                    raise _RefusedError(
                        412, "multiple-matches", f"If-None-Exist finds {len(matches)} records"
                    )
                if matches:
                    return await guarded_resource(request, hapi, access, trail, matches[0])
            # A create's id and version are the server's to give.
            meta = {
                k: v
                for k, v in resource.get("meta", {}).items()
                if k not in ("versionId", "lastUpdated")
            }
            resource = {k: v for k, v in resource.items() if k not in ("id", "meta")}
            if meta:
                resource["meta"] = meta
            contract_id, key = _contract_key(kind, resource)
            stored = await store.records(contract_id, change_by(access, trail))
            value = f"{contract_id}/{key}"
            existing = _record(stored.bundle, kind, key=value)
            if existing is not None:
                raise _RefusedError(
                    409, "duplicate", f"{kind}/{existing['id']} is {value}: update it instead"
                )
            if kind == "CareTeam":
                wanted = f"{_CARE_CONTACT}{len(stored.contract.care_contacts)}"
                if key != wanted:
                    raise _RefusedError(
                        422,
                        "processing",
                        f"a new care contact's CareTeam is {contract_id}/{wanted}",
                    )
            _foreign_patient(resource, stored)
            await _store(store, access, trail, stored, _added(stored.bundle, resource))
            found = await hapi.search(kind, [("identifier", f"{CONTRACT_SYSTEMS[kind]}|{value}")])
            return await guarded_resource(request, hapi, access, trail, found.matches()[0], 201)

        return await answer(request, lambda: _write(trail, work))

    handlers: dict[str, tuple[str, str, Callable[..., Awaitable[Response]]]] = {
        "create": ("POST", f"/{kind}", create),
        "update": ("PUT", f"/{kind}/{{resource_id}}", update),
    }
    for interaction, (method, path, handler) in handlers.items():
        if interaction in offered:
            router.add_api_route(
                path,
                handler,
                methods=[method],
                name=route_name(interaction, kind),
                summary=f"{interaction} {kind}",
                response_class=Response,
                responses={200 if interaction == "update" else 201: {"content": {FHIR_JSON: {}}}},
            )


for _kind in INTERACTIONS:
    _add_routes(_kind)
