"""Every resource the FHIR endpoint returns passes this guard, matches and includes alike.

Searches are narrowed towards the caller's walls before they reach HAPI, but what comes back is
checked one resource at a time all the same, so no search parameter, ``_include``, chain or
paging link can carry another patient's data out:

- a contract's records (CarePlan, CareTeam, Goal, Appointment) need the caller's right to read
  that type, and their contract must lie in the caller's compartment; what the patient, or a
  unit other than the responsible one, may not see (drafts, restricted content) is dropped as
  in `fhir_service.contract.disclosure`, and a CarePlan shown to them names none of it: its
  goal, activity and care team references to what they are not shown are taken out, and the
  copy is marked SUBSETTED (`subset_naming`), so not even the ids or the number of withheld
  records show;
- records of no contract are the patient's own only when they name the patient;
- AuditEvent and Provenance need their own right (an auditor's);
- a Patient or RelatedPerson comes along when an admitted record refers to it; read on its own,
  a Patient is the caller's when it is the patient the caller acts for or, for a care unit, a
  patient of one of the unit's contracts, and a RelatedPerson when a care team the caller is
  shown names them;
- the directory (practitioners, their roles, organizations, services, locations) and the
  bookable times (schedules, slots, which name no patient) are not patient data;
- anything else stays behind.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fhir_service.contract import (
    Confidentiality,
    Identifier,
    IdentifierKind,
    InvalidIdentifierError,
)
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.elements import (
    activity_confidentiality_of,
    confidentiality_of,
    references,
)
from fhir_service.mapping.identifier_systems import kind_for, system_for
from fhir_service.mapping.ownership import CONTRACT_SYSTEMS, contract_of, patient_references
from fhir_service.security.access import (
    Access,
    AccessDeniedError,
    Compartment,
    Requirement,
    decide,
)
from fhir_service.store.search import UNIT_OF_CONTRACT

__all__ = ["DIRECTORY_TYPES", "NOT_PATIENT_DATA", "SUBSETTED", "FhirGuard", "subset_naming"]

Resource = dict[str, Any]

DIRECTORY_TYPES = frozenset(
    {"Practitioner", "PractitionerRole", "Organization", "HealthcareService", "Location"}
)
_TIMES = frozenset({"Schedule", "Slot"})
NOT_PATIENT_DATA = DIRECTORY_TYPES | _TIMES
"""What every caller with the right to read the type is shown whole."""
_PEOPLE = frozenset({"Patient", "RelatedPerson"})

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
"""The ``meta.tag`` FHIR gives a resource served with parts of it left out."""


@dataclass(frozen=True, slots=True)
class _Contract:
    """What the guard needs to know of a contract: whose, whose responsibility, how open, and
    which of the records its CarePlan names (``Type/id``) are open to every reader of it."""

    patients: frozenset[Identifier]
    unit: Identifier | None
    draft: bool
    """A draft the care unit has not put to the patient: the unit's alone."""
    confidentiality: Confidentiality
    open_records: frozenset[str]


class FhirGuard:
    """Decides, for one request, which resources its caller may be shown."""

    def __init__(self, access: Access, hapi: HapiClient) -> None:
        self.access = access
        self.hapi = hapi
        self._rights: dict[str, Compartment | None] = {}
        self._contracts: dict[str, _Contract | None] = {}
        self._patient_ids: frozenset[str] | None = None
        self._unit_patients: dict[str, bool] = {}

    @property
    def unrestricted(self) -> bool:
        """Whether the caller's grant reaches everything of the route's type."""
        walls = self.access.compartment
        return walls.patient is None and walls.organization is None

    def may_read(self, kind: str) -> bool:
        """Whether the caller may be shown any ``kind`` record at all."""
        return kind in DIRECTORY_TYPES or self._right(kind) is not None

    async def patient_ids(self) -> frozenset[str]:
        """The ids of the HAPI Patient resources of the caller's patient (none for others)."""
        patient = self.access.compartment.patient
        if patient is None:
            return frozenset()
        if self._patient_ids is None:
            token = f"{system_for(patient.kind)}|{patient.value}"
            found = await self.hapi.search("Patient", [("identifier", token), ("_elements", "id")])
            self._patient_ids = frozenset(str(r["id"]) for r in found.matches())
        return self._patient_ids

    async def screened(self, resources: Iterable[Resource]) -> list[Resource | None]:
        """For each resource, what of it the caller may see: None when nothing, else the
        resource itself or, for a walled reader, a copy naming nothing withheld from them.

        Answer with what this returns, never with what went in: the copy is the point.
        """
        resources = list(resources)
        await self._learn_contracts(resources)
        shown = [await self._admits(r) for r in resources]
        # People come along only with a record that was let through and points at them.
        pointed = {
            ref for resource in shown if resource is not None for ref in references(resource)
        }
        people = [
            (index, r)
            for index, r in enumerate(resources)
            if r.get("resourceType") in _PEOPLE
            and f"{r['resourceType']}/{r.get('id')}" not in pointed
        ]
        await self._learn_unit_patients(
            [_patient_of(r) for _, r in people if r.get("resourceType") == "Patient"]
        )
        for index, resource in enumerate(resources):
            if resource.get("resourceType") in _PEOPLE:
                brought = f"{resource['resourceType']}/{resource.get('id')}" in pointed
                if brought or await self._is_callers(resource):
                    shown[index] = resource
        return shown

    def patients_of(self, resource: Resource) -> frozenset[Identifier]:
        """The patients ``resource`` is about, as far as its contract tells (for the audit)."""
        contract_id = contract_of(resource)
        contract = None if contract_id is None else self._contracts.get(contract_id)
        if contract is not None:
            return contract.patients
        patient = self.access.compartment.patient
        return frozenset() if patient is None else frozenset({patient})

    async def _admits(self, resource: Resource) -> Resource | None:
        """``resource`` as the caller may see it, or None; people are decided afterwards."""
        kind = str(resource.get("resourceType"))
        if kind in DIRECTORY_TYPES:
            return resource
        if kind in _TIMES:
            return resource if self._right(kind) is not None else None
        if kind in _PEOPLE:
            return None  # decided once the records are known
        walls = self._right(kind)
        if walls is None:
            return None
        if walls.patient is None and walls.organization is None:
            return resource
        if kind not in CONTRACT_SYSTEMS:
            return None
        contract_id = contract_of(resource)
        if contract_id is None:
            # Not a contract's: the patient's own record if it names them, never a unit's.
            named = patient_references(resource)
            mine = {f"Patient/{i}" for i in await self.patient_ids()}
            return resource if named & mine and _open(resource) else None
        contract = self._contracts.get(contract_id)
        if contract is None:
            return None
        if walls.patient is not None and walls.patient not in contract.patients:
            return None
        if walls.organization is not None and walls.organization != contract.unit:
            return None
        if walls.organization is not None:
            return resource  # the responsible unit sees all of its contract
        if contract.draft or not _open_label(contract.confidentiality) or not _open(resource):
            return None
        return subset_naming(resource, contract.open_records)

    async def _is_callers(self, resource: Resource) -> bool:
        """Whether a Patient or RelatedPerson read on its own is the caller's to see: the
        patient, to themselves or a unit with a contract of theirs; a relative, when a care team
        the caller is shown names them (one named only in a draft is as absent as the draft)."""
        if self._right(str(resource.get("resourceType"))) is None:
            return False
        if resource.get("resourceType") == "RelatedPerson":
            return await self._in_a_shown_team(str(resource.get("id")))
        patient = _patient_of(resource)
        if self.access.compartment.patient is not None:
            return patient in await self.patient_ids()
        if self.access.compartment.organization is not None:
            return self._unit_patients.get(patient, False)
        return True

    async def _in_a_shown_team(self, relative: str) -> bool:
        found = await self.hapi.search(
            "CareTeam", [("participant", f"RelatedPerson/{relative}"), ("_count", "50")]
        )
        teams = found.matches()
        await self._learn_contracts(teams)
        return any([await self._admits(team) is not None for team in teams])

    async def _learn_unit_patients(self, patients: list[str]) -> None:
        """Which of ``patients`` (ids) have a contract the caller's unit is responsible for."""
        unit = self.access.compartment.organization
        wanted = sorted({p for p in patients if p} - set(self._unit_patients))
        if unit is None or not wanted:
            return
        token = f"{system_for(unit.kind)}|{unit.value}"
        for chunk in _chunks(wanted, 50):
            found = await self.hapi.search(
                "CarePlan",
                [
                    ("subject", ",".join(f"Patient/{p}" for p in chunk)),
                    (UNIT_OF_CONTRACT, token),
                    ("_elements", "subject"),
                    ("_count", "100"),
                ],
                max_pages=5,
            )
            theirs = {
                str(r.get("subject", {}).get("reference", "")).removeprefix("Patient/")
                for r in found.matches()
            }
            self._unit_patients.update({p: p in theirs for p in chunk})

    def _right(self, kind: str) -> Compartment | None:
        """The caller's walls for reading ``kind``, or None when it may not read it at all."""
        if kind not in self._rights:
            if kind == self.access.requirement.resource_type:
                self._rights[kind] = self.access.compartment
            else:
                try:
                    granted = decide(
                        self.access.principal,
                        Requirement(kind, "r"),
                        self.access.compartment.patient,
                    )
                except AccessDeniedError:
                    self._rights[kind] = None
                else:
                    self._rights[kind] = granted.compartment
        return self._rights[kind]

    async def _learn_contracts(self, resources: list[Resource]) -> None:
        wanted = {contract_of(r) for r in resources} - set(self._contracts) - {None}
        ids = sorted(i for i in wanted if i is not None)
        for chunk in _chunks(ids, 50):
            for contract_id in chunk:
                self._contracts[contract_id] = None
            tokens = ",".join(f"{urls.ID_CONTRACT}|{i}" for i in chunk)
            found = await self.hapi.search(
                "CarePlan",
                [
                    ("identifier", tokens),
                    ("_include", "CarePlan:subject"),
                    ("_include", "CarePlan:responsible-unit"),
                    # What the CarePlan names, for the labels: shown to a walled reader, it
                    # names only the open records.
                    ("_include", "CarePlan:goal"),
                    ("_include", "CarePlan:activity-reference"),
                    ("_include", "CarePlan:care-team"),
                    ("_count", str(len(chunk))),
                ],
                max_pages=5,
            )
            self._contracts.update(_facts(found.resources))


def _facts(resources: list[Resource]) -> Iterator[tuple[str, _Contract]]:
    by_reference = {f"{r['resourceType']}/{r.get('id')}": r for r in resources}
    for careplan in (r for r in resources if r.get("resourceType") == "CarePlan"):
        contract_id = contract_of(careplan)
        if contract_id is None:
            continue
        patient = by_reference.get(str(careplan.get("subject", {}).get("reference")), {})
        unit = by_reference.get(_unit_reference(careplan), {})
        units = _identifiers(unit)
        yield (
            contract_id,
            _Contract(
                patients=frozenset(_identifiers(patient)),
                unit=units[0] if units else None,
                draft=careplan.get("status") == "draft" and not _put_to_patient(careplan),
                confidentiality=confidentiality_of(careplan),
                open_records=frozenset(
                    reference
                    for reference, record in by_reference.items()
                    if contract_of(record) == contract_id and _open(record)
                ),
            ),
        )


def _patient_of(resource: Resource) -> str:
    """The id of the patient a Patient is, or a RelatedPerson is related to."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id", ""))
    reference = str(resource.get("patient", {}).get("reference", ""))
    return reference.removeprefix("Patient/") if reference.startswith("Patient/") else ""


def _unit_reference(careplan: Resource) -> str:
    """The responsible unit the CarePlan names (extension responsible-unit)."""
    return next(
        (
            str(e.get("valueReference", {}).get("reference"))
            for e in careplan.get("extension", [])
            if e.get("url") == urls.EXT_RESPONSIBLE_UNIT
        ),
        "",
    )


def subset_naming(
    careplan: Resource, shown: Container[str], activities: Container[str] | None = None
) -> Resource:
    """``careplan`` naming, of its goals, referenced activities and care teams, only those in
    ``shown`` (``Type/id``), and holding none of its restricted activities: a copy marked
    `SUBSETTED`, or ``careplan`` itself when nothing is left out. Any other resource is
    returned as it is.

    What is not known to be shown is taken out, so an older version naming a record deleted
    since names it no more. The copy keeps ``meta.versionId`` (and so its ETag): it is that
    version, less what the reader is not shown. The narrative stays, since it never lists
    restricted activities, goals or times (`fhir_service.mapping.narrative`).

    ``activities``: the keys of the activities written in the CarePlan that are shown, when
    the caller knows them (the contract as disclosed); None: those not labelled restricted.
    """
    if careplan.get("resourceType") != "CarePlan":
        return careplan
    kept = {
        "goal": [g for g in careplan.get("goal", []) if _names(g, shown)],
        "careTeam": [t for t in careplan.get("careTeam", []) if _names(t, shown)],
        "activity": [
            a
            for a in careplan.get("activity", [])
            if isinstance(a, dict)
            and ("reference" not in a or _names(a["reference"], shown))
            and ("detail" not in a or _shows_activity(a, activities))
        ],
    }
    if all(len(found) == len(careplan.get(key, [])) for key, found in kept.items()):
        return careplan
    # FHIR allows no empty lists: an element with nothing left goes.
    subset: Resource = {k: kept.get(k, v) for k, v in careplan.items() if k not in kept or kept[k]}
    meta = dict(careplan.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), dict(SUBSETTED)]
    subset["meta"] = meta
    return subset


def _names(reference: object, shown: Container[str]) -> bool:
    """Whether ``reference`` (a FHIR Reference) names a record in ``shown``, in any version."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return False
    return str(reference["reference"]).split("/_history/")[0] in shown


def _identifiers(resource: Resource) -> list[Identifier]:
    found = []
    for identifier in resource.get("identifier", []):
        kind = kind_for(str(identifier.get("system", "")))
        if kind is None or not isinstance(identifier.get("value"), str):
            continue
        try:
            found.append(Identifier(kind=IdentifierKind(kind), value=identifier["value"]))
        except (ValueError, InvalidIdentifierError):
            continue
    return found


def _open(resource: Resource) -> bool:
    return _open_label(confidentiality_of(resource))


def _shows_activity(activity: Resource, shown: Container[str] | None) -> bool:
    if shown is not None:
        return activity.get("id") in shown
    detail = activity["detail"]
    return isinstance(detail, dict) and _open_label(activity_confidentiality_of(detail))


def _open_label(confidentiality: Confidentiality) -> bool:
    return confidentiality is Confidentiality.NORMAL


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _put_to_patient(careplan: Resource) -> bool:
    extensions = careplan.get("extension")
    return any(
        isinstance(e, dict) and e.get("url") == urls.EXT_PATIENT_REVIEW
        for e in (extensions if isinstance(extensions, list) else [])
    )
