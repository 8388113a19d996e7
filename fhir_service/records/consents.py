"""The patient's leave for a relative: a FHIR ``Consent`` the patient grants and revokes, and the
check a relative's every request passes.

The patient names the relative by their national identifier (personnummer, fødselsnummer, ...),
for a period, with or without the right to report on the activities the relative owns. The grant
is a ``Consent`` (scope patient-privacy, the patient its subject and performer, a permit
provision with the period, the relative's ``RelatedPerson`` as actor, action ``access``, and
``correct`` when they may report), beside a ``RelatedPerson`` of the relative for the patient,
created once. A relative's token names that ``RelatedPerson`` (SMART ``fhirUser``) and the
patient; `leave_in_force` finds the active Consent whose period holds now, or none, on every
request: a grant revoked or run out stops the next request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir_service.audit.witness import Witness
from fhir_service.contract import Identifier, IdentifierKind, Name
from fhir_service.errors import RecordNotFoundError, UnprocessableError, issue
from fhir_service.fhir import HapiClient
from fhir_service.mapping.elements import human_name, instant
from fhir_service.mapping.identifier_systems import kind_for, system_of
from fhir_service.security.access import Access, AccessDeniedError, Denial, Leave

__all__ = ["CallerConsents", "Grant", "leave_in_force"]

Resource = dict[str, Any]

_SCOPE = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
    ]
}
_CATEGORY = [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}]
_POLICY = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]
}
_ACTIONS = "http://terminology.hl7.org/CodeSystem/consentaction"
_ROLE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FAMMEMB"}]
}


_PERSON_KINDS = frozenset(
    {
        IdentifierKind.PERSONNUMMER,
        IdentifierKind.SAMORDNINGSNUMMER,
        IdentifierKind.FODSELSNUMMER,
        IdentifierKind.D_NUMMER,
    }
)


@dataclass(frozen=True, slots=True)
class Grant:
    """A leave as the patient reads it: whom, for when, what, and whether it is in force."""

    id: str
    relative: Identifier | None
    related_person: str
    start: datetime
    end: datetime
    may_report: bool
    active: bool
    record: Resource = field(default_factory=dict, compare=False, repr=False)
    """The Consent as stored in HAPI: what the FHIR endpoint answers."""


class CallerConsents:
    """The leaves one request's caller (a patient) has granted, and their way to grant more."""

    def __init__(self, access: Access, witness: Witness, hapi: HapiClient) -> None:
        self.access = access
        self.witness = witness
        self.hapi = hapi

    async def grant(
        self,
        relative: Identifier,
        name: Name | None,
        period: tuple[datetime | None, datetime],
        may_report: bool,
        *,
        named: Resource | None = None,
    ) -> Grant:
        """Let ``relative`` read the patient's plan from ``period[0]`` (None: now) until
        ``period[1]`` (and report on the activities they own when ``may_report``). ``named``
        is the patient a FHIR Consent names, when it names one: it must be the caller."""
        start, end = period[0] or datetime.now(UTC), period[1]
        problems = []
        if relative.kind not in _PERSON_KINDS:
            said = (
                "a relative is named by their personnummer, samordningsnummer, fødselsnummer "
                "or D-nummer"
            )
            problems.append(issue(said, "invalid", "$.relative.identifier.kind"))
        if end <= start:
            problems.append(issue("the leave ends after it starts", "invalid", "$.period.end"))
        if problems:
            raise UnprocessableError("the leave is not complete", problems)
        patient_ref = await self._patient_reference()
        if named is not None and not self._is_caller(named, patient_ref):
            # A leave is the patient's own to give: never on another patient's behalf.
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise AccessDeniedError(Denial.OUTSIDE_COMPARTMENT)
        person_url = f"urn:uuid:{uuid.uuid4()}"
        person: Resource = {
            "resourceType": "RelatedPerson",
            "identifier": [{"system": system_of(relative), "value": relative.value}],
            "patient": {"reference": patient_ref},
            "relationship": [_ROLE],
        }
        if name is not None:
            person["name"] = [human_name(name)]
        actions = ["access", "correct"] if may_report else ["access"]
        consent: Resource = {
            "resourceType": "Consent",
            "status": "active",
            "scope": _SCOPE,
            "category": _CATEGORY,
            "patient": {"reference": patient_ref},
            "dateTime": instant(datetime.now(UTC)),
            "performer": [{"reference": patient_ref}],
            "policyRule": _POLICY,
            "provision": {
                "type": "permit",
                "period": {"start": instant(start), "end": instant(end)},
                "actor": [{"role": _ROLE, "reference": {"reference": person_url}}],
                "action": [{"coding": [{"system": _ACTIONS, "code": a}]} for a in actions],
            },
        }
        criteria = f"identifier={system_of(relative)}|{relative.value}&patient={patient_ref}"
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": person_url,
                    "resource": person,
                    "request": {"method": "POST", "url": "RelatedPerson", "ifNoneExist": criteria},
                },
                {"resource": consent, "request": {"method": "POST", "url": "Consent"}},
            ],
        }
        answer = await self.hapi.transaction(bundle)
        locations = [str(e.get("response", {}).get("location", "")) for e in answer["entry"]]
        consent_id = locations[1].split("/")[1]
        return _ours(await self.hapi.read("Consent", consent_id), relative)

    async def all(self) -> list[Grant]:
        """Every leave the patient granted, in force or not, newest first."""
        return (await self._leaves())[0]

    async def bundle(self) -> Resource:
        """Every leave the patient granted, as the FHIR searchset of their Consents (newest
        first), with the RelatedPerson each names included."""
        grants, people = await self._leaves()
        named = {g.related_person for g in grants}
        entries = [
            {
                "fullUrl": f"{self.hapi.base_url}/Consent/{g.id}",
                "resource": g.record,
                "search": {"mode": "match"},
            }
            for g in grants
        ] + [
            {
                "fullUrl": f"{self.hapi.base_url}/{reference}",
                "resource": person,
                "search": {"mode": "include"},
            }
            for reference, person in people.items()
            if reference in named
        ]
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(grants),
            "entry": entries,
        }

    async def record(self, consent_id: str) -> Resource:
        """The leave ``consent_id`` as its Consent; another patient's is not there."""
        return await self._own(consent_id)

    async def relative_named(self, related_person: str) -> Identifier:
        """The national identifier of ``RelatedPerson/<id>``, a relative of this patient's
        (a leave is given again to someone given one before); another's is not there."""
        patient_ref = await self._patient_reference()
        kind, _, rid = related_person.partition("/")
        person: Resource = {}
        if kind == "RelatedPerson" and rid:
            try:
                person = await self.hapi.read("RelatedPerson", rid)
            except RecordNotFoundError:
                person = {}
        identifier = _identifier_of(person)
        if person and person.get("patient", {}).get("reference") != patient_ref:
            # Another patient's relative is not there for this one, and the try is on record.
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise RecordNotFoundError(f"no relative {related_person!r} of yours")
        if identifier is None:
            raise RecordNotFoundError(f"no relative {related_person!r} of yours")
        return identifier

    async def _leaves(self) -> tuple[list[Grant], dict[str, Resource]]:
        patient_ref = await self._patient_reference()
        found = await self.hapi.search(
            "Consent",
            [("patient", patient_ref), ("_include", "Consent:actor"), ("_sort", "-_lastUpdated")],
        )
        people = {f"RelatedPerson/{r['id']}": r for r in found.resources if _is(r, "RelatedPerson")}
        grants = (
            _grant_of(r, _identifier_of(people.get(_actor(r), {})))
            for r in found.resources
            if _is(r, "Consent")
        )
        return [g for g in grants if g is not None], people

    async def revoke(self, consent_id: str) -> Grant:
        """End the leave ``consent_id`` now: the relative's next request is refused."""
        consent = await self._own(consent_id)
        consent["status"] = "inactive"
        version = consent.get("meta", {}).get("versionId")
        stored = await self.hapi.update(consent, if_match=version)
        person = await self.hapi.read("RelatedPerson", _actor(stored).split("/")[1])
        return _ours(stored, _identifier_of(person))

    async def _own(self, consent_id: str) -> Resource:
        try:
            consent = await self.hapi.read("Consent", consent_id)
        except RecordNotFoundError:
            raise RecordNotFoundError(f"no leave {consent_id!r} of yours") from None
        theirs = consent.get("patient", {}).get("reference") == await self._patient_reference()
        if not theirs or _grant_of(consent, None) is None:
            # Another patient's leave is not there for this one.
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise RecordNotFoundError(f"no leave {consent_id!r} of yours")
        return consent

    def _is_caller(self, named: Resource, patient_ref: str) -> bool:
        """Whether a FHIR Reference ``named`` names the caller, by id or by identifier."""
        reference = named.get("reference")
        if isinstance(reference, str):
            # Relative (Patient/<id>) or absolute (a base URL before it), without a version.
            plain = reference.split("/_history/")[0]
            if plain != patient_ref and not plain.endswith(f"/{patient_ref}"):
                return False
        identifier = named.get("identifier")
        if isinstance(identifier, dict):
            return _identifiers_of({"identifier": [identifier]}) == [
                self.access.compartment.patient
            ]
        return isinstance(reference, str)

    async def _patient_reference(self) -> str:
        """``Patient/<id>`` of the caller, who must be the patient themselves."""
        patient = self.access.compartment.patient
        if self.access.context != "patient" or self.access.leave is not None or patient is None:
            self.witness.refused(Denial.ONLY_THE_PATIENT_ACTS.value)
            raise AccessDeniedError(Denial.ONLY_THE_PATIENT_ACTS)
        found = await self.hapi.search(
            "Patient", [("identifier", f"{system_of(patient)}|{patient.value}")], max_pages=1
        )
        if not found.resources:
            raise RecordNotFoundError("you have no plan to share yet")
        return f"Patient/{found.resources[0]['id']}"


async def leave_in_force(
    hapi: HapiClient, patient: Identifier, related_person: str
) -> Leave | None:
    """The patient's leave for the relative ``related_person`` (``RelatedPerson/<id>``) that is
    in force now, or None: an active Consent of this patient naming the relative, whose period
    holds this moment."""
    found = await hapi.search(
        "Consent",
        [
            ("actor", related_person),
            # This patient's only: one page holds them, whoever else the relative is kin to.
            ("patient.identifier", f"{system_of(patient)}|{patient.value}"),
            ("status", "active"),
            ("_include", "Consent:patient"),
            ("_include", "Consent:actor"),
        ],
        max_pages=1,
    )
    patients = {f"Patient/{r['id']}": r for r in found.resources if _is(r, "Patient")}
    people = {f"RelatedPerson/{r['id']}": r for r in found.resources if _is(r, "RelatedPerson")}
    in_force = []
    for consent in (r for r in found.resources if _is(r, "Consent")):
        whose = patients.get(str(consent.get("patient", {}).get("reference")), {})
        if patient not in _identifiers_of(whose) or _actor(consent) != related_person:
            continue
        grant = _grant_of(consent, _identifier_of(people.get(related_person, {})))
        if grant is not None and grant.active:
            in_force.append(grant)
    if not in_force:
        return None
    # Leaves add up: one that lets the relative report does, whatever the others say.
    grant = max(in_force, key=lambda g: g.may_report)
    return Leave(grant.id, related_person, grant.relative, grant.may_report)


def _grant_of(consent: Resource, relative: Identifier | None) -> Grant | None:
    """The leave ``consent`` records; None for a Consent that is no leave of ours (another
    system's, without a period or an actor): it grants nothing here."""
    provision = consent.get("provision")
    if not isinstance(provision, dict) or not isinstance(provision.get("period"), dict):
        return None
    try:
        start = datetime.fromisoformat(str(provision["period"].get("start")))
        end = datetime.fromisoformat(str(provision["period"].get("end")))
    except ValueError:
        return None
    if start.tzinfo is None or end.tzinfo is None or not _actor(consent):
        return None
    codes = {
        c.get("code")
        for a in provision.get("action", [])
        if isinstance(a, dict)
        for c in a.get("coding", [])
        if isinstance(c, dict)
    }
    now = datetime.now(UTC)
    return Grant(
        id=str(consent["id"]),
        relative=relative,
        related_person=_actor(consent),
        start=start,
        end=end,
        may_report="correct" in codes,
        active=consent.get("status") == "active" and start <= now < end,
        record=consent,
    )


def _ours(consent: Resource, relative: Identifier | None) -> Grant:
    """The leave this service just wrote or read back as one."""
    grant = _grant_of(consent, relative)
    if grant is None:
        raise ValueError(f"Consent/{consent.get('id')} is no leave: it was changed in HAPI")
    return grant


def _actor(consent: Resource) -> str:
    provision = consent.get("provision")
    actors = provision.get("actor") if isinstance(provision, dict) else None
    first = actors[0] if isinstance(actors, list) and actors else {}
    reference = first.get("reference") if isinstance(first, dict) else None
    return str(reference.get("reference", "")) if isinstance(reference, dict) else ""


def _is(resource: Resource, kind: str) -> bool:
    return resource.get("resourceType") == kind


def _identifiers_of(resource: Resource) -> list[Identifier]:
    found = []
    for identifier in resource.get("identifier", []):
        kind = kind_for(str(identifier.get("system", "")))
        if kind is None:
            continue
        try:
            found.append(Identifier(kind=kind, value=str(identifier.get("value", ""))))
        except ValueError:
            continue
    return found


def _identifier_of(resource: Resource) -> Identifier | None:
    identifiers = _identifiers_of(resource)
    return identifiers[0] if identifiers else None
