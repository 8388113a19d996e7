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
from fhir_service.api.fhir.changes import (
    etag_version,
    invalid,
    profile_errors,
    step_to,
    stored_or_refused,
)
from fhir_service.api.fhir.outcomes import FHIR_JSON, fhir_response, outcome
from fhir_service.contract import Contract, model
from fhir_service.mapping.codes import unknown_codes
from fhir_service.mapping.from_fhir import UnreadableContractError, contract_from_bundle
from fhir_service.security.access import Access, AccessDeniedError, Denial, Requirement, decide
from fhir_service.sync.store import (
    ContractNotFoundError,
    ContractStore,
    OutsideCompartmentError,
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
    too_large = _beyond_limits(bundle)
    if too_large:
        # Before HAPI's $validate, whose work grows with the Bundle: a contract too large to
        # store is refused at once, not after minutes of validation.
        return fhir_response({"resourceType": "OperationOutcome", "issue": too_large}, 422)

    async def write() -> Response:
        problems = await profile_errors(hapi, bundle)
        if problems:
            return invalid(problems)
        try:
            contract = contract_from_bundle(bundle)
        except UnreadableContractError as exc:
            return outcome(422, "processing", f"not a contract we can read: {exc}")
        codes = unknown_codes(contract)
        if codes:
            return invalid([f"{path}: {message}" for path, message in codes])
        trail.saw_contract(contract)
        if not access.compartment.allows(contract):
            trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
            return outcome(403, "forbidden", Denial.OUTSIDE_COMPARTMENT.value)
        return await _store(request, bundle, contract, store, access, trail)

    return await stored_or_refused(trail, write)


async def _store(
    request: Request,
    bundle: Resource,
    contract: Contract,
    store: ContractStore,
    access: Access,
    trail: AuditTrail,
) -> Response:
    change = change_by(access, trail)
    try:
        current = await store.records(contract.id, change)
    except OutsideCompartmentError:
        raise
    except ContractNotFoundError:
        current = None
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
    written = await step_to(store, current, contract, expected, change)
    trail.saw_contract(written)
    return _answer(bundle, written, 200)


def _expected_version(request: Request, bundle: Resource) -> int | None:
    for entry in bundle.get("entry", []):
        if entry.get("resource", {}).get("resourceType") == "CarePlan":
            asked = entry.get("request", {}).get("ifMatch")
            if isinstance(asked, str):
                return etag_version(asked)
    header = request.headers.get("if-match")
    return None if header is None else etag_version(header)


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


_LIMITS = {
    "Goal": ("goals", model.MAX_GOALS),
    "Appointment": ("agreed times", model.MAX_AGREED_TIMES),
    "RelatedPerson": ("relatives", model.MAX_RELATIVES),
    # The care team of everyone taking part, and one per care contact.
    "CareTeam": ("care teams", model.MAX_CARE_CONTACTS + 1),
}


def _beyond_limits(bundle: Resource) -> list[Resource]:
    """An issue for each part of the contract larger than a contract may hold (see
    ``contract.model.MAX_GOALS`` and its neighbours); [] when it fits."""
    resources = [e["resource"] for e in bundle["entry"]]
    issues = []
    for kind, (what, most) in _LIMITS.items():
        count = sum(1 for r in resources if r.get("resourceType") == kind)
        if count > most:
            issues.append(_too_many(f"Bundle.entry.resource.ofType({kind})", count, what, most))
    careplan = next(r for r in resources if r.get("resourceType") == "CarePlan")
    for element, what, most in (
        ("activity", "activities", model.MAX_ACTIVITIES),
        ("note", "resources and wishes", 2 * model.MAX_NOTES),
    ):
        count = len(careplan.get(element) or [])
        if count > most:
            expression = f"Bundle.entry.resource.ofType(CarePlan).{element}"
            issues.append(_too_many(expression, count, what, most))
    return issues


def _too_many(expression: str, count: int, what: str, most: int) -> Resource:
    return {
        "severity": "error",
        "code": "too-costly",
        "diagnostics": f"the contract holds {count} {what}; a contract holds at most {most}",
        "expression": [expression],
    }


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
