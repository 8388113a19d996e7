"""Every resource the FHIR endpoint returns passes this guard, matches and includes alike.

Searches are narrowed towards the caller's walls before they reach HAPI, but what comes back is
checked one resource at a time all the same, so no search parameter, ``_include``, chain or
paging link can carry another patient's data out:

- a contract's records (CarePlan, CareTeam, Goal, Appointment) need the caller's right to read
  that type, and their contract must lie in the caller's compartment; what the patient, or a
  unit other than the responsible one, may not see (drafts, restricted content) is dropped as
  in `fhir_service.contract.disclosure`;
- records of no contract are the patient's own only when they name the patient;
- AuditEvent and Provenance need their own right (an auditor's);
- a Patient or RelatedPerson comes along only when an admitted record refers to it;
- the directory (practitioners, their roles, organizations, services) is not patient data;
- anything else stays behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
from fhir_service.mapping.elements import confidentiality_of
from fhir_service.mapping.identifier_systems import kind_for, system_for
from fhir_service.mapping.ownership import CONTRACT_SYSTEMS, contract_of, patient_references
from fhir_service.security.access import (
    Access,
    AccessDeniedError,
    Compartment,
    Requirement,
    decide,
)

__all__ = ["DIRECTORY_TYPES", "FhirGuard"]

Resource = dict[str, Any]

DIRECTORY_TYPES = frozenset(
    {"Practitioner", "PractitionerRole", "Organization", "HealthcareService", "Location"}
)
_PEOPLE = frozenset({"Patient", "RelatedPerson"})


@dataclass(frozen=True, slots=True)
class _Contract:
    """What the guard needs to know of a contract: whose, whose responsibility, how open."""

    patients: frozenset[Identifier]
    unit: Identifier | None
    draft: bool
    confidentiality: Confidentiality


class FhirGuard:
    """Decides, for one request, which resources its caller may be shown."""

    def __init__(self, access: Access, hapi: HapiClient) -> None:
        self.access = access
        self.hapi = hapi
        self._rights: dict[str, Compartment | None] = {}
        self._contracts: dict[str, _Contract | None] = {}
        self._patient_ids: frozenset[str] | None = None

    @property
    def unrestricted(self) -> bool:
        """Whether the caller's grant reaches everything of the route's type."""
        walls = self.access.compartment
        return walls.patient is None and walls.organization is None

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

    async def admitted(self, resources: Iterable[Resource]) -> list[bool]:
        """For each resource, whether the caller may see it."""
        resources = list(resources)
        await self._learn_contracts(resources)
        verdicts = [await self._admits(r) for r in resources]
        # People come along only with a record that was let through and points at them.
        pointed = {
            ref
            for resource, verdict in zip(resources, verdicts, strict=True)
            if verdict
            for ref in _references(resource)
        }
        return [
            verdict
            if resource.get("resourceType") not in _PEOPLE
            else f"{resource['resourceType']}/{resource.get('id')}" in pointed
            or await self._is_the_patient(resource)
            for resource, verdict in zip(resources, verdicts, strict=True)
        ]

    def patients_of(self, resource: Resource) -> frozenset[Identifier]:
        """The patients ``resource`` is about, as far as its contract tells (for the audit)."""
        contract_id = contract_of(resource)
        contract = None if contract_id is None else self._contracts.get(contract_id)
        if contract is not None:
            return contract.patients
        patient = self.access.compartment.patient
        return frozenset() if patient is None else frozenset({patient})

    async def _admits(self, resource: Resource) -> bool:
        kind = str(resource.get("resourceType"))
        if kind in DIRECTORY_TYPES:
            return True
        if kind in _PEOPLE:
            return False  # decided once the records are known
        walls = self._right(kind)
        if walls is None:
            return False
        if walls.patient is None and walls.organization is None:
            return True
        if kind not in CONTRACT_SYSTEMS:
            return False
        contract_id = contract_of(resource)
        if contract_id is None:
            # Not a contract's: the patient's own record if it names them, never a unit's.
            named = patient_references(resource)
            mine = {f"Patient/{i}" for i in await self.patient_ids()}
            return bool(named & mine) and _open(resource)
        contract = self._contracts.get(contract_id)
        if contract is None:
            return False
        if walls.patient is not None and walls.patient not in contract.patients:
            return False
        if walls.organization is not None and walls.organization != contract.unit:
            return False
        if walls.organization is not None:
            return True  # the responsible unit sees all of its contract
        return not contract.draft and _open_label(contract.confidentiality) and _open(resource)

    async def _is_the_patient(self, resource: Resource) -> bool:
        if resource.get("resourceType") != "Patient":
            return False
        return str(resource.get("id")) in await self.patient_ids()

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
                    ("_include", "CarePlan:responsible-clinician"),
                    ("_include:iterate", "PractitionerRole:organization"),
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
        role = by_reference.get(str(careplan.get("author", {}).get("reference")), {})
        unit = by_reference.get(str(role.get("organization", {}).get("reference")), {})
        units = _identifiers(unit)
        yield (
            contract_id,
            _Contract(
                patients=frozenset(_identifiers(patient)),
                unit=units[0] if units else None,
                draft=careplan.get("status") == "draft",
                confidentiality=confidentiality_of(careplan),
            ),
        )


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


def _open_label(confidentiality: Confidentiality) -> bool:
    return confidentiality is Confidentiality.NORMAL


def _references(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
