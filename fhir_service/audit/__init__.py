"""Audit: AuditEvents for every access and their durable way into HAPI."""

from fhir_service.audit import outbox
from fhir_service.audit.outbox import AuditOutbox, AuditWriter
from fhir_service.audit.records import (
    AccessRecord,
    Caller,
    FhirIdentifier,
    Interaction,
    Outcome,
    Touched,
    contract_entities,
)
from fhir_service.audit.witness import Witness

__all__ = [
    "AccessRecord",
    "AuditOutbox",
    "AuditWriter",
    "Caller",
    "FhirIdentifier",
    "Interaction",
    "Outcome",
    "Touched",
    "Witness",
    "contract_entities",
    "outbox",
]
