"""``POST /fhir``: a transaction Bundle holding one whole contract, created or changed.

A FHIR-capable EHR writes contracts as it reads them: the Bundle of one contract's records
(CarePlan, CareTeams, Goals, Appointments and the people and places they name, plus the
agreement's Provenance). Before anything reaches HAPI the Bundle is validated against our
profiles (HAPI's ``Bundle/$validate``) and read as a contract, which checks what profiles
cannot: identifiers and their check digits, known codes, a coherent lifecycle. The contract is
then stored as the JSON facade stores it: one transaction with its change's Provenance.

A Bundle whose contract is new creates it. One whose contract exists changes it: its contents
while it is a draft or under revision, or its status by one lifecycle step (agree, revise,
complete, end, revoke), never both at once. The CarePlan entry's ``request.ifMatch`` (or the
request's ``If-Match``) names the version the change is based on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from fhir_service.api.audit_trail import AuditTrail, change_by
from fhir_service.api.deps import AccessDep, AuditTrailDep, HapiClientDep, StoreDep
from fhir_service.api.fhir.bodies import BodyError, fhir_body
from fhir_service.api.fhir.outcomes import FHIR_JSON, fhir_response, outcome
from fhir_service.contract import Contract, ContractStatus
from fhir_service.contract.lifecycle import IllegalTransitionError
from fhir_service.fhir import HapiClient, HapiRequestError, HapiUnavailableError
from fhir_service.mapping.codes import unknown_codes
from fhir_service.mapping.from_fhir import UnreadableContractError, contract_from_bundle
from fhir_service.security.access import Access, AccessDeniedError, Denial, Requirement, decide
from fhir_service.sync.store import (
    Change,
    ContractExistsError,
    ContractNotEditableError,
    ContractNotFoundError,
    ContractStore,
    OutsideCompartmentError,
    StaleVersionError,
)

__all__ = ["TRANSACTION_TYPES", "router"]

Resource = dict[str, Any]

router = APIRouter(prefix="/fhir", tags=["fhir"])

TRANSACTION_TYPES = frozenset(
    {
        "CarePlan",
        "CareTeam",
        "Goal",
        "Appointment",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "HealthcareService",
        "RelatedPerson",
        "Provenance",
    }
)
"""What one contract's Bundle may hold; anything else is not a contract's record."""

_MOST_ISSUES = 20


@router.post(
    "",
    name="fhir_transaction",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}, 201: {"content": {FHIR_JSON: {}}}},
)
async def transaction(
    request: Request,
    hapi: HapiClientDep,
    store: StoreDep,
    access: AccessDep,
    trail: AuditTrailDep,
) -> Response:
    """Create or change one contract from a transaction Bundle of its records."""
    try:
        bundle = await fhir_body(request)
    except BodyError as exc:
        return outcome(exc.status, exc.code, str(exc))
    refused = _not_a_contract_bundle(bundle) or _other_patient(bundle)
    if refused is not None:
        return outcome(422, "processing", refused)
    try:
        problems = await _profile_errors(hapi, bundle)
        if problems:
            return _invalid(problems)
        try:
            contract = contract_from_bundle(bundle)
        except UnreadableContractError as exc:
            return outcome(422, "processing", f"not a contract we can read: {exc}")
        codes = unknown_codes(contract)
        if codes:
            return _invalid([f"{path}: {message}" for path, message in codes])
        trail.saw_contract(contract)
        change = change_by(access, trail)
        if not access.compartment.allows(contract):
            trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
            return outcome(403, "forbidden", Denial.OUTSIDE_COMPARTMENT.value)
        return await _store(request, bundle, contract, store, change, access, trail)
    except HapiUnavailableError:
        unavailable = "the FHIR store is unavailable; nothing was written"
        return outcome(503, "transient", unavailable, {"Retry-After": "5"})
    except HapiRequestError:
        return outcome(502, "exception", "the FHIR store refused the write; nothing was written")


async def _store(
    request: Request,
    bundle: Resource,
    contract: Contract,
    store: ContractStore,
    change: Change,
    access: Access,
    trail: AuditTrail,
) -> Response:
    try:
        current = await store.read(contract.id)
    except ContractNotFoundError:
        current = None
    try:
        if current is None:
            try:
                decide(access.principal, Requirement("CarePlan", "c"), access.compartment.patient)
            except AccessDeniedError as exc:
                trail.refused(exc.denial.value)
                return outcome(403, "forbidden", exc.denial.value)
            created = await store.create(
                contract.model_copy(update={"version": None}), author=change.author
            )
            return _answer(bundle, created, 201)
        expected = _expected_version(request, bundle)
        if expected is None:
            needed = 'name the version changed in the CarePlan entry\'s request.ifMatch: W/"3"'
            return outcome(428, "required", needed)
        written = await _change(store, current, contract, expected, change)
    except ContractExistsError as exc:
        return outcome(409, "duplicate", str(exc))
    except OutsideCompartmentError:
        trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
        return outcome(404, "not-found", "no such contract")
    except AccessDeniedError as exc:
        trail.refused(exc.denial.value)
        return outcome(403, "forbidden", exc.denial.value)
    except StaleVersionError as exc:
        return outcome(409, "conflict", str(exc))
    except (ContractNotEditableError, IllegalTransitionError, _MixedChangeError) as exc:
        return outcome(409, "business-rule", str(exc))
    trail.saw_contract(written)
    return _answer(bundle, written, 200)


class _MixedChangeError(Exception):
    """Contents and status changed at once."""


async def _change(
    store: ContractStore, current: Contract, wanted: Contract, expected: int, change: Change
) -> Contract:
    if wanted.status is current.status:
        return await store.update(wanted, expected, change)
    same_contents = _contents(wanted) == _contents(current)
    if not same_contents:
        raise _MixedChangeError(
            f"the contract goes from {current.status} to {wanted.status} and its contents change"
            " too: send the contents first, then the status"
        )
    contract_id = current.id
    if wanted.status is ContractStatus.AGREED:
        return await store.agree(contract_id, expected, wanted.agreements, change)
    steps = {
        ContractStatus.REVISED: store.revise,
        ContractStatus.COMPLETED: store.complete,
        ContractStatus.ENDED: store.end,
        ContractStatus.REVOKED: store.revoke,
    }
    if wanted.status not in steps:
        raise IllegalTransitionError(current.status, wanted.status)
    return await steps[wanted.status](contract_id, expected, change)


def _contents(contract: Contract) -> Contract:
    neutral = {"status": ContractStatus.DRAFT, "agreements": (), "version": None}
    return contract.model_copy(update=neutral)


def _expected_version(request: Request, bundle: Resource) -> int | None:
    for entry in bundle.get("entry", []):
        if entry.get("resource", {}).get("resourceType") == "CarePlan":
            asked = entry.get("request", {}).get("ifMatch")
            if isinstance(asked, str):
                return _version(asked)
    header = request.headers.get("if-match")
    return None if header is None else _version(header)


def _version(etag: str) -> int | None:
    value = etag.strip().removeprefix("W/").strip('"')
    return int(value) if value.isdigit() else None


def _not_a_contract_bundle(bundle: Resource) -> str | None:
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        return "POST /fhir takes a transaction Bundle"
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        return "the transaction has no entries"
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            return f"entry {index} holds no resource"
        if resource.get("resourceType") not in TRANSACTION_TYPES:
            return (
                f"entry {index} is a {resource.get('resourceType')!r}: a transaction here holds "
                "one contract's records only"
            )
    return None


def _other_patient(bundle: Resource) -> str | None:
    """Why a record names a patient other than the CarePlan's, or None when all agree."""
    by_url = {e.get("fullUrl"): e["resource"] for e in bundle["entry"]}
    careplans = [r for r in by_url.values() if r.get("resourceType") == "CarePlan"]
    if len(careplans) != 1:
        return f"the transaction holds {len(careplans)} CarePlans: a contract has one"
    subject = careplans[0].get("subject", {}).get("reference")
    for url, resource in by_url.items():
        references = [resource.get("subject", {}).get("reference")]
        references.append(resource.get("patient", {}).get("reference"))
        references += [p.get("actor", {}).get("reference") for p in resource.get("participant", [])]
        for reference in references:
            named = by_url.get(reference)
            if (
                named is not None
                and named.get("resourceType") == "Patient"
                and reference != subject
            ):
                kind = resource.get("resourceType")
                return f"{kind} {url} names a patient other than the CarePlan's subject"
    return None


async def _profile_errors(hapi: HapiClient, bundle: Resource) -> list[str]:
    answer = await hapi.validate(bundle)
    return [
        f"{issue.get('location', [''])[0] if issue.get('location') else ''}: "
        f"{issue.get('diagnostics', '')}".strip(": ")
        for issue in answer.get("issue", [])
        if issue.get("severity") in ("error", "fatal")
    ]


def _invalid(problems: list[str]) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "invariant", "diagnostics": problem}
            for problem in problems[:_MOST_ISSUES]
        ],
    }
    return fhir_response(body, 422)


def _answer(bundle: Resource, contract: Contract, status: int) -> Response:
    """A transaction-response: one entry per request entry, the contract's version on the plan."""
    entries = []
    for entry in bundle.get("entry", []):
        kind = entry.get("resource", {}).get("resourceType")
        response: Resource = {"status": "201 Created" if status == 201 else "200 OK"}
        if kind == "CarePlan":
            response["etag"] = f'W/"{contract.version}"'
        entries.append({"response": response})
    headers = {"ETag": f'W/"{contract.version}"'}
    body = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    return fhir_response(body, status, headers)
