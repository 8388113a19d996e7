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

__all__ = [
    "AccessRecord",
    "AuditOutbox",
    "AuditWriter",
    "Caller",
    "FhirIdentifier",
    "Interaction",
    "Outcome",
    "Touched",
    "contract_entities",
    "outbox",
]
