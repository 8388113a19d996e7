"""What one request's caller may see and change, bound once per request: the FHIR records
(`CallerRecords`), the contracts and booking of the JSON facade (`CallerContracts`,
`CallerBooking`), their Idempotency-Keys (`Replays`), and the guard every FHIR resource given
back passes."""

from fhir_service.records.booking import CallerBooking, FreeSlotsAsked, JudgedSlot, Template
from fhir_service.records.consents import CallerConsents, Grant, leave_in_force
from fhir_service.records.contracts import (
    CallerContracts,
    ContractCriteria,
    ContractWritten,
    Found,
    Shown,
)
from fhir_service.records.plan_access import readable_plan
from fhir_service.records.progress import ProgressAsked
from fhir_service.records.proposals import ProposalAsked
from fhir_service.records.replays import Replays, StoredResponse
from fhir_service.records.repository import CallerRecords, Find
from fhir_service.records.signing import Decision
from fhir_service.records.webhooks import CallerWebhooks

__all__ = [
    "CallerBooking",
    "CallerConsents",
    "CallerContracts",
    "CallerRecords",
    "CallerWebhooks",
    "ContractCriteria",
    "ContractWritten",
    "Decision",
    "Find",
    "Found",
    "FreeSlotsAsked",
    "Grant",
    "JudgedSlot",
    "ProgressAsked",
    "ProposalAsked",
    "Replays",
    "Shown",
    "StoredResponse",
    "Template",
    "leave_in_force",
    "readable_plan",
]
