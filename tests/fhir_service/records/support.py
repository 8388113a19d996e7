"""A caller of the services in ``records/``: their access within given walls, and their audit
record as the services fill it, kept to be looked at (`fhir_service.audit.Witness`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fhir_service.audit import FhirIdentifier, Touched, contract_entities
from fhir_service.contract import Contract
from fhir_service.security import Access, Compartment, Requirement
from fhir_service.security.tokens import Principal


def access_within(walls: Compartment, requirement: Requirement) -> Access:
    """A token's access granted ``requirement`` inside ``walls``: a patient's, or a system's."""
    return Access(
        principal=Principal(subject="someone", client_id="tests", scopes=frozenset()),
        requirement=requirement,
        context="patient" if walls.patient is not None else "system",
        compartment=walls,
    )


@dataclass
class RecordedWitness:
    """What one request's services said to its audit record."""

    query: str | None = None
    write_key: str | None = None
    patients: list[FhirIdentifier] = field(default_factory=list)
    entities: list[Touched] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def saw_contract(self, contract: Contract) -> None:
        patient, entity = contract_entities(contract)
        self.saw(entity, [patient])

    def saw(self, entity: Touched, patients: Iterable[FhirIdentifier] = ()) -> None:
        self.patients += [p for p in patients if p not in self.patients]
        if entity not in self.entities:
            self.entities.append(entity)

    def refused(self, reason: str) -> None:
        self.refusals.append(reason)
