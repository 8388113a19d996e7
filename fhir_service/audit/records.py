"""What one access was, as the service saw it: the input of an AuditEvent.

The API layer fills an `AccessRecord` for every request to a protected route, allowed or not;
`fhir_service.audit.events` turns it into an AuditEvent following the IHE Basic Audit Log
Patterns. Identifiers here are FHIR ``(system, value)`` pairs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from fhir_service.contract import Contract
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_of

__all__ = [
    "AccessRecord",
    "Caller",
    "FhirIdentifier",
    "Interaction",
    "Outcome",
    "Touched",
    "contract_entities",
]

FhirIdentifier = tuple[str, str]
"""An identifier as FHIR writes it: ``(system, value)``."""


class Interaction(StrEnum):
    """The FHIR RESTful interaction a request was (``http://hl7.org/fhir/restful-interaction``)."""

    READ = "read"
    VREAD = "vread"
    SEARCH = "search-type"
    HISTORY = "history-instance"
    TYPE_HISTORY = "history-type"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    OPERATION = "operation"
    TRANSACTION = "transaction"


class Outcome(IntEnum):
    """AuditEvent.outcome: how the request ended."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    """The request was refused or could not be done as asked (any 4xx, denials included)."""
    SERIOUS_FAILURE = 8
    """The service or HAPI failed (5xx)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked, as far as a valid token told; all None for a request without one."""

    subject: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    organization: FhirIdentifier | None = None
    """The care unit the user acts for (on whose behalf)."""
    patient: FhirIdentifier | None = None
    """The patient a patient-scoped token speaks for."""
    address: str | None = None
    """The network address the request came from."""

    @property
    def key(self) -> str:
        """A pseudonymous key of the caller (issuer and subject), for what belongs to them:
        their idempotency keys and webhooks. Stored instead of the subject, which may be a
        person's id.
        """
        caller = f"{self.issuer}|{self.subject}".encode()
        return hashlib.sha256(caller).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Touched:
    """A record the request read, wrote or was refused: by reference, identifier, or both."""

    resource_type: str
    identifier: FhirIdentifier | None = None
    reference: str | None = None
    """``Type/id`` or ``Type/id/_history/n`` in HAPI, when known."""


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One request to a protected route and how it ended."""

    id: str
    """A UUID; it becomes the AuditEvent's id, so writing it twice stores it once."""
    recorded: datetime
    interaction: Interaction
    outcome: Outcome | None
    """None while the request runs, and for good when it died before its answer was known."""
    description: str
    """What happened in a few words, e.g. ``read contract`` or ``denied: insufficient scope``."""
    caller: Caller
    request_id: str
    method: str
    route: str
    """The route template (``/contracts/{contract_id}``), never the raw path."""
    patients: tuple[FhirIdentifier, ...] = ()
    entities: tuple[Touched, ...] = ()
    query: str | None = None
    """A search's query string, as sent."""
    operation: str | None = None
    """For ``Interaction.OPERATION`` and lifecycle steps: its name, e.g. ``agree``."""


def contract_entities(contract: Contract) -> tuple[FhirIdentifier, Touched]:
    """The patient a contract is about and the contract itself, as an audit record names them."""
    patient = contract.patient.identifier
    return (
        (system_of(patient), patient.value),
        Touched("CarePlan", identifier=(urls.ID_CONTRACT, contract.id)),
    )
