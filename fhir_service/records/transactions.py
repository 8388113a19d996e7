"""A transaction Bundle holding one whole contract, created or changed.

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

The answer is a transaction-response as R4 has it: an entry per entry sent, in the same order,
each with its own status (``201 Created`` for a record this write created, ``200 OK`` for one it
changed or found as it was), and the ``location``, ``etag`` and ``lastModified`` of the record
as stored. A Provenance sent is the agreement the contract's own Provenance records: its entry
has a status and no location.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fhir_service.contract import Contract, Identifier, model
from fhir_service.errors import (
    ForbiddenError,
    UnprocessableError,
    VersionRequiredError,
    issue,
)
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import (
    Sender,
    UnreadableContractError,
    contract_from_bundle,
)
from fhir_service.mapping.sent import RECORD_TYPES
from fhir_service.mapping.time_types import named_time_types, unknown_time_types
from fhir_service.records.changes import etag_version, profile_issues, step_to
from fhir_service.records.reads import CallerReads
from fhir_service.security.access import AccessDeniedError, Denial, Requirement, decide
from fhir_service.store import (
    ContractNotFoundError,
    ContractStore,
    OutsideCompartmentError,
)

__all__ = ["TRANSACTION_TYPES", "contract_in", "stored_transaction"]

Resource = dict[str, Any]

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
"""What one contract's Bundle may hold beside the clinical records its plan refers to
(``RECORD_TYPES``, kept with it); anything else is not a contract's record."""


async def contract_in(records: CallerReads, bundle: Resource) -> Contract:
    """The contract ``bundle`` holds; `UnprocessableError` naming every problem at once."""
    store, unit = records.store, records.access.compartment.organization
    if not _is_transaction(bundle):
        raise _refused(_not_a_transaction(bundle))
    # Records of other types are named, and the rest is still read, so that the answer names
    # every problem at once.
    problems = _not_a_contracts_record(bundle)
    problems += _other_patient(bundle)
    problems += _dangling(bundle)
    too_large = _beyond_limits(bundle)
    if too_large:
        # Before HAPI's $validate, whose work grows with the Bundle: a contract too large to
        # store is refused at once, not after minutes of validation.
        raise _refused(problems + too_large)
    problems += await _unheld(bundle, store)
    problems += await profile_issues(records.hapi, bundle)
    try:
        new_id = await _id_for(bundle, store, unit)
        # Another EHR's plan: the calling unit is responsible for it when it names no clinician
        # of ours, and attests the agreement to one in force there.
        sender = None
        if new_id is not None and unit is not None:
            sender = Sender(await store.unit(unit), datetime.now(UTC))
        contract = contract_from_bundle(bundle, codes=True, sent=True, new_id=new_id, sender=sender)
    except UnreadableContractError as exc:
        problems += [_issue(i.expression, i.message, _code_of(i.message)) for i in exc.issues]
        raise _refused(problems) from exc
    records.saw_contract(contract)
    types = await records.booking.catalogue.current(knowing=named_time_types(contract))
    problems += [
        _issue(_service_type_of(bundle, contract, path), message, "code-invalid")
        for path, message in unknown_time_types(contract, types)
    ]
    if problems:
        raise _refused(problems)
    return contract


def _service_type_of(bundle: Resource, contract: Contract, path: str) -> str:
    """Where the Bundle names the time type at ``path`` (``$.agreed_times[i].time_type``): the
    serviceType of the first Appointment with that code of ours."""
    index_of_time = int(path.split("[", 1)[1].split("]", 1)[0])
    wanted = contract.agreed_times[index_of_time].time_type
    for index, entry in enumerate(bundle.get("entry", [])):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Appointment":
            codes = [
                c.get("code")
                for concept in resource.get("serviceType", [])
                for c in concept.get("coding", [])
                if isinstance(c, dict) and c.get("system") == urls.CS_TIME_TYPE
            ]
            if wanted in codes:
                return f"Bundle.entry[{index}].resource.serviceType"
    return path


_LOOKED_UP = 5
"""How many of a CarePlan's own identifiers are looked up to find its contract."""


async def _id_for(bundle: Resource, store: ContractStore, unit: Identifier | None) -> str | None:
    """The contract a CarePlan without a contract id of ours is: the one its sender's own
    identifiers already found among the caller's unit's, else a new one, named after the unit
    and the first of them so that the same plan sent twice at once is one contract (a plan
    without any gets a random id)."""
    careplans = [
        e["resource"] for e in bundle["entry"] if e["resource"].get("resourceType") == "CarePlan"
    ]
    identifiers = [
        i for c in careplans[:1] for i in c.get("identifier") or [] if isinstance(i, dict)
    ]
    if any(i.get("system") == urls.ID_CONTRACT for i in identifiers):
        return None  # ours names it
    theirs = [
        (i["system"], i["value"])
        for i in identifiers
        if isinstance(i.get("system"), str) and isinstance(i.get("value"), str)
    ]
    # A plan has one or two; a Bundle listing thousands makes no thousand searches.
    found = await store.known_as(theirs[:_LOOKED_UP], unit)
    if found is not None:
        return found
    issuer = "" if unit is None else f"{unit.kind}|{unit.value}|"
    seed = f"{issuer}{theirs[0][0]}|{theirs[0][1]}" if theirs else uuid.uuid4().hex
    return f"plan-{uuid.uuid5(uuid.NAMESPACE_URL, seed).hex}"


def _issue(expression: str, diagnostics: str, code: str = "invalid") -> Resource:
    return issue(diagnostics, code, expression)


def _code_of(message: str) -> str:
    if message == "is required":
        return "required"
    if message.startswith("unknown "):
        return "code-invalid"
    return "invalid"


async def stored_transaction(
    records: CallerReads, bundle: Resource, if_match: str | None, *, represented: bool = False
) -> Resource:
    """Store the contract ``bundle`` holds; the transaction-response, its entries holding the
    records as stored when ``represented`` (``Prefer: return=representation``)."""
    contract = await contract_in(records, bundle)
    access = records.access
    if not access.compartment.allows(contract):
        records.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
        raise ForbiddenError(Denial.OUTSIDE_COMPARTMENT.value)
    store, change = records.store, records.change
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
            records.witness.refused(exc.denial.value)
            raise ForbiddenError(exc.denial.value) from exc
        written = await store.create(
            contract.model_copy(update={"version": None}), author=change.author
        )
    else:
        expected = _expected_version(bundle, if_match)
        if expected is None:
            at = current.contract.version
            needed = (
                "name the version changed in the CarePlan entry's request.ifMatch (or "
                f'If-Match): the contract is at W/"{at}"'
            )
            where = f"Bundle.entry[{_careplan_at(bundle)}].request.ifMatch"
            raise VersionRequiredError(needed, [issue(needed, "required", where)])
        written = await step_to(store, current, contract, expected, change)
    records.saw_contract(written)
    after = await store.records(written.id, change)
    before = set() if current is None else _ids(current.bundle)
    answer = _response(bundle, after.bundle, before)
    if represented:
        await _represented(records, answer, after.bundle)
    return answer


def _expected_version(bundle: Resource, if_match: str | None) -> int | None:
    for entry in bundle.get("entry", []):
        if entry.get("resource", {}).get("resourceType") == "CarePlan":
            asked = entry.get("request", {}).get("ifMatch")
            if isinstance(asked, str):
                return etag_version(asked)
    return None if if_match is None else etag_version(if_match)


def _careplan_at(bundle: Resource) -> int:
    """The index of the CarePlan's entry."""
    entries = bundle["entry"]
    return next(i for i, e in enumerate(entries) if e["resource"].get("resourceType") == "CarePlan")


def _refused(issues: list[Resource]) -> UnprocessableError:
    """The refusal of a Bundle with these problems."""
    return UnprocessableError("the Bundle is no contract this server can take", issues)


def _is_transaction(bundle: Resource) -> bool:
    entries = bundle.get("entry")
    return (
        bundle.get("resourceType") == "Bundle"
        and bundle.get("type") == "transaction"
        and isinstance(entries, list)
        and bool(entries)
        and all(isinstance(e, dict) and isinstance(e.get("resource"), dict) for e in entries)
    )


def _not_a_transaction(bundle: Resource) -> list[Resource]:
    """Why ``bundle`` is no transaction of resources at all."""
    if bundle.get("resourceType") != "Bundle":
        return [_issue("Bundle", "POST /fhir takes a transaction Bundle", "structure")]
    if bundle.get("type") != "transaction":
        return [_issue("Bundle.type", "POST /fhir takes a transaction Bundle", "structure")]
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        return [_issue("Bundle.entry", "the transaction has no entries", "required")]
    return [
        _issue(f"Bundle.entry[{index}]", "holds no resource", "required")
        for index, entry in enumerate(entries)
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict)
    ]


def _not_a_contracts_record(bundle: Resource) -> list[Resource]:
    """An issue per entry of a type no contract's record has."""
    issues = []
    for index, entry in enumerate(bundle["entry"]):
        kind = entry["resource"].get("resourceType")
        if kind not in TRANSACTION_TYPES and kind not in RECORD_TYPES:
            shown = kind if isinstance(kind, str) and kind.isalpha() else "resource"
            issues.append(
                _issue(
                    f"Bundle.entry[{index}].resource",
                    f"a {shown} is not a record a contract holds: the transaction holds "
                    f"{', '.join(sorted(TRANSACTION_TYPES))}, and the patient's clinical "
                    f"records the plan refers to ({', '.join(sorted(RECORD_TYPES))})",
                    "not-supported",
                )
            )
    return issues


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
    issues: list[Resource] = []
    for kind, (what, most) in _LIMITS.items():
        count = sum(1 for r in resources if r.get("resourceType") == kind)
        if count > most:
            issues.append(_too_many(f"Bundle.entry.resource.ofType({kind})", count, what, most))
    careplan: Resource = next((r for r in resources if r.get("resourceType") == "CarePlan"), {})
    for element, what, most in (
        ("activity", "activities", model.MAX_ACTIVITIES),
        ("note", "resources and wishes", 2 * model.MAX_NOTES),
    ):
        items = careplan.get(element)
        count = len(items) if isinstance(items, list) else 0
        if count > most:
            expression = f"Bundle.entry.resource.ofType(CarePlan).{element}"
            issues.append(_too_many(expression, count, what, most))
    return issues


def _too_many(expression: str, count: int, what: str, most: int) -> Resource:
    return issue(
        f"the contract holds {count} {what}; a contract holds at most {most}",
        "too-costly",
        expression,
    )


def _other_patient(bundle: Resource) -> list[Resource]:
    """An issue per record that names a patient other than the CarePlan's."""
    entries = bundle["entry"]
    by_url = {e.get("fullUrl"): e["resource"] for e in entries if isinstance(e.get("fullUrl"), str)}
    careplans = [e["resource"] for e in entries if e["resource"].get("resourceType") == "CarePlan"]
    if len(careplans) != 1:
        return []  # said by the reading, which needs one CarePlan
    subject = _reference(careplans[0].get("subject"))
    issues = []
    for index, entry in enumerate(entries):
        resource = entry["resource"]
        places = [("subject", resource.get("subject")), ("patient", resource.get("patient"))]
        participants = resource.get("participant")
        for n, participant in enumerate(participants if isinstance(participants, list) else []):
            actor = participant.get("actor") if isinstance(participant, dict) else None
            places.append((f"participant[{n}].actor", actor))
        for element, value in places:
            reference = _reference(value)
            named = by_url.get(reference)
            elsewhere = isinstance(reference, str) and reference.startswith("Patient/")
            if (
                elsewhere or (named is not None and named.get("resourceType") == "Patient")
            ) and reference != subject:
                issues.append(
                    _issue(
                        f"Bundle.entry[{index}].resource.{element}",
                        "names a patient other than the CarePlan's subject",
                        "business-rule",
                    )
                )
    return issues


def _references(bundle: Resource) -> Iterator[tuple[str, str, bool]]:
    """Each reference the Bundle's resources make: where (the ``.reference`` element's
    FHIRPath), what it says, and whether it is made inside a contained resource."""

    def walk(value: Any, path: str, contained: bool) -> Iterator[tuple[str, str, bool]]:
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, f"{path}[{index}]", contained)
        elif isinstance(value, dict):
            reference = value.get("reference")
            if isinstance(reference, str):
                yield f"{path}.reference", reference, contained
            for key, item in value.items():
                yield from walk(item, f"{path}.{key}", contained or key == "contained")

    for index, entry in enumerate(bundle["entry"]):
        yield from walk(entry["resource"], f"Bundle.entry[{index}].resource", False)


def _dangling(bundle: Resource) -> list[Resource]:
    """An issue per reference to a ``urn:`` fullUrl no entry has: nothing could resolve it."""
    full_urls = {e.get("fullUrl") for e in bundle["entry"]}
    message = "refers to a fullUrl no entry of the Bundle has"
    return [
        _issue(path, message, "not-found")
        for path, reference, _ in _references(bundle)
        if reference.startswith("urn:") and reference not in full_urls
    ]


_RELATIVE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(/_history/[0-9]+)?")


async def _unheld(bundle: Resource, store: ContractStore) -> list[Resource]:
    """An issue per reference to a record (``Type/id``) neither the Bundle nor the server
    holds: a sender's link to a record of its own system, which the server cannot keep."""
    # An entry answers to its fullUrl, and an update to the id its request names.
    full_urls = {str(e.get("fullUrl")) for e in bundle["entry"]}
    requests = (e.get("request") for e in bundle["entry"])
    full_urls |= {f"/{r.get('url')}" for r in requests if isinstance(r, dict)}
    places: list[tuple[str, str]] = []
    # HAPI keeps a contained resource's references as they are, unresolved.
    for path, reference, contained in _references(bundle):
        matched = None if contained else _RELATIVE.fullmatch(reference)
        named = None if matched is None else f"{matched[1]}/{matched[2]}"
        if named is not None and not any(u.endswith(f"/{named}") for u in full_urls):
            places.append((path, named))
    if not places:
        return []
    unheld = await store.unheld(named for _, named in places)
    return [
        _issue(
            path,
            f"refers to {named}, which neither the Bundle nor this server holds: send that "
            "record in the Bundle, or name it by identifier or display instead",
            "not-found",
        )
        for path, named in places
        if named in unheld
    ]


def _reference(value: Any) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) else None


def _ids(bundle: Resource) -> set[str]:
    """``Type/id`` of each record in ``bundle``."""
    return {
        f"{e['resource'].get('resourceType')}/{e['resource'].get('id')}"
        for e in bundle.get("entry", [])
        if isinstance(e.get("resource"), dict)
    }


async def _represented(records: CallerReads, answer: Resource, stored: Resource) -> None:
    """Put into each entry of ``answer`` the record its location names, as the caller may
    see it."""
    by_location = {
        f"{r['resourceType']}/{r['id']}/_history/{r.get('meta', {}).get('versionId')}": r
        for r in (e["resource"] for e in stored.get("entry", []) if "resource" in e)
    }
    entries = [e for e in answer["entry"] if e["response"].get("location") in by_location]
    found = [by_location[e["response"]["location"]] for e in entries]
    # The write is done whatever this shows: a record the caller may not see is left out.
    for entry, shown in zip(entries, await records.guard.screened(found), strict=True):
        if shown is not None:
            entry["resource"] = shown


def _response(sent: Resource, stored: Resource, before: set[str]) -> Resource:
    """The transaction-response to ``sent``, from the contract's records as ``stored`` now;
    ``before``: the records (``Type/id``) the contract had before the write."""
    resources = [
        e["resource"] for e in stored.get("entry", []) if isinstance(e.get("resource"), dict)
    ]
    careplan: Resource = next((r for r in resources if r.get("resourceType") == "CarePlan"), {})
    # HAPI gives every record one transaction writes the same lastUpdated: a record with the
    # CarePlan's was written now, one with another was found as it was.
    now = careplan.get("meta", {}).get("lastUpdated")
    matched = _matched(sent, stored, resources)
    entries = []
    for index in range(len(sent["entry"])):
        record = matched.get(index)
        if record is None:
            entries.append({"response": {"status": "200 OK"}})
            continue
        meta = record.get("meta", {})
        reference = f"{record['resourceType']}/{record['id']}"
        version = meta.get("versionId")
        written_now = meta.get("lastUpdated") == now
        created = written_now and reference not in before and version == "1"
        response: Resource = {
            "status": "201 Created" if created else "200 OK",
            "location": f"{reference}/_history/{version}" if version else reference,
        }
        if version:
            response["etag"] = f'W/"{version}"'
        if meta.get("lastUpdated"):
            response["lastModified"] = meta["lastUpdated"]
        entries.append({"response": response})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


def _matched(sent: Resource, stored: Resource, resources: list[Resource]) -> dict[int, Resource]:
    """For each entry of ``sent`` (by index), the stored record it became: the one of its
    type sharing an identifier with it, else the one the stored CarePlan names where the sent
    CarePlan names the entry."""
    found: dict[int, Resource] = {}
    for index, entry in enumerate(sent["entry"]):
        resource = entry["resource"]
        kind = resource.get("resourceType")
        if kind == "CarePlan":
            found[index] = next(r for r in resources if r.get("resourceType") == "CarePlan")
            continue
        theirs = _identifiers(resource)
        same = [r for r in resources if r.get("resourceType") == kind and theirs & _identifiers(r)]
        if len(same) == 1:
            found[index] = same[0]
    by_url = {str(e.get("fullUrl")): i for i, e in enumerate(sent["entry"])}
    by_reference = {f"{r['resourceType']}/{r.get('id')}": r for r in resources}
    careplans = [
        e["resource"] for e in sent["entry"] if e["resource"].get("resourceType") == "CarePlan"
    ]
    stored_plan: Resource = next((r for r in resources if r.get("resourceType") == "CarePlan"), {})
    for ours, named in _named(stored_plan, careplans[0] if careplans else {}):
        at = by_url.get(named)
        record = by_reference.get(ours)
        if at is not None and at not in found and record is not None:
            found[at] = record
    return found


def _named(stored: Resource, sent: Resource) -> Iterator[tuple[str, str]]:
    """Pairs of what the stored CarePlan names and what the sent one names at the same place:
    the stored plan keeps the sender's structure, so a place names the record sent there."""
    ours = dict(_places(stored, "CarePlan"))
    for path, named in _places(sent, "CarePlan"):
        if path in ours:
            yield ours[path], named


def _places(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Each reference in ``value``, by where it is (outside contained resources)."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str):
            yield path, reference.split("/_history/")[0]
        for key, item in value.items():
            if key != "contained":
                yield from _places(item, f"{path}.{key}")


def _identifiers(resource: Resource) -> set[tuple[str, str]]:
    return {
        (str(i.get("system")), str(i.get("value")))
        for i in resource.get("identifier", [])
        if isinstance(i, dict) and i.get("value")
    }
