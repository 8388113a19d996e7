"""What every route needs, in one table: a route missing from it is refused, never open.

Keys are route names (the endpoint function's name, or the ``name`` given to the route). A test
enumerates the app's routes and fails on any without an entry, so a new route cannot forget.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from fhir_service.api.fhir.types import INTERACTIONS
from fhir_service.api.fhir.types import route_name as fhir_route
from fhir_service.audit import Interaction
from fhir_service.security import Permission, Requirement

__all__ = ["RULES", "Protected", "Public", "rule_for"]


class Public(Enum):
    """Routes open without a token: they show no patient data."""

    OPERATIONS = "liveness, readiness and metrics, for orchestrators and monitoring"
    DOCS = "the OpenAPI document and its viewers"
    CAPABILITIES = "the FHIR endpoint's CapabilityStatement, which clients read before a token"
    VOCABULARY = "the names of codes, the same for every caller"
    CONFORMANCE = "our profiles, value sets, code systems and the like, for validators"
    DISCOVERY = "SMART discovery and the local issuer's keys: where tokens come from"
    ISSUING = "the local issuer's token endpoint, which checks the client's own signed assertion"


@dataclass(frozen=True, slots=True)
class Protected:
    """A route behind a token: what it needs, and how its audit record names the access."""

    requirement: Requirement
    interaction: Interaction
    operation: str | None = None


def _contract(
    permission: Permission, interaction: Interaction, operation: str | None = None
) -> Protected:
    return Protected(Requirement("CarePlan", permission), interaction, operation)


def _booking(operation: str) -> Protected:
    # A booking changes an agreed time (an Appointment) of a contract, never the CarePlan.
    return Protected(Requirement("Appointment", "u"), Interaction.OPERATION, operation)


def _webhook(permission: Permission, interaction: Interaction) -> Protected:
    # A webhook reads contract changes as they happen, within the registrant's compartment.
    return Protected(Requirement("Subscription", permission), interaction)


RULES: dict[str, Protected | Public] = {
    "health": Public.OPERATIONS,
    "ready": Public.OPERATIONS,
    "metrics": Public.OPERATIONS,
    "openapi": Public.DOCS,
    "swagger_ui_html": Public.DOCS,
    "swagger_ui_redirect": Public.DOCS,
    "redoc_html": Public.DOCS,
    "create_contract": _contract("c", Interaction.CREATE),
    "search_contracts": _contract("s", Interaction.SEARCH),
    "read_contract": _contract("r", Interaction.READ),
    "update_contract": _contract("u", Interaction.UPDATE),
    "agree_contract": _contract("u", Interaction.OPERATION, "agree"),
    "revise_contract": _contract("u", Interaction.OPERATION, "revise"),
    "complete_contract": _contract("u", Interaction.OPERATION, "complete"),
    "end_contract": _contract("u", Interaction.OPERATION, "end"),
    "revoke_contract": _contract("u", Interaction.OPERATION, "revoke"),
    "propose_contract": _contract("u", Interaction.OPERATION, "propose"),
    # A party's signature is a Provenance of its own, the right to give one neither the right
    # to write the contract nor to read the audit trail: a patient signs, and cannot change.
    "sign_contract": Protected(Requirement("Provenance", "c"), Interaction.OPERATION, "sign"),
    # So are a report of how an activity goes and the patient's proposal: a party's own act,
    # not a change of the terms. The unit answers a proposal as it changes a contract.
    "report_progress": Protected(Requirement("Provenance", "c"), Interaction.OPERATION, "progress"),
    "add_proposal": Protected(Requirement("Provenance", "c"), Interaction.OPERATION, "proposal"),
    "answer_proposal": _contract("u", Interaction.OPERATION, "answer-proposal"),
    # The coherent plan searches the patient's contracts across care units.
    "read_plan": _contract("s", Interaction.SEARCH),
    "read_labels": Public.VOCABULARY,
    # Clinics publish bookable times; booking platforms and patients book agreed times.
    "publish_slots": Protected(Requirement("Slot", "c"), Interaction.CREATE),
    "find_slots": Protected(Requirement("Slot", "s"), Interaction.SEARCH),
    # A unit's time types are HealthcareServices its EHR defines; whoever finds its times
    # reads what they are called.
    "list_time_types": Protected(Requirement("Slot", "s"), Interaction.SEARCH),
    "define_time_type": Protected(Requirement("HealthcareService", "u"), Interaction.UPDATE),
    "retire_time_type": Protected(Requirement("HealthcareService", "d"), Interaction.DELETE),
    "book_time": _booking("book"),
    "hold_time": _booking("hold"),
    "release_time": _booking("release"),
    "cancel_time": _booking("cancel"),
    "rebook_time": _booking("rebook"),
    "booked_times": Protected(Requirement("Appointment", "s"), Interaction.SEARCH),
    # Which of a unit's contracts break the care guarantee: a search of its contracts.
    "guarantee_breaches": _contract("s", Interaction.SEARCH),
    # The patient's leaves for relatives.
    "grant_consent": Protected(Requirement("Consent", "c"), Interaction.CREATE),
    "list_consents": Protected(Requirement("Consent", "s"), Interaction.SEARCH),
    "revoke_consent": Protected(Requirement("Consent", "u"), Interaction.UPDATE),
    # The patient's page: each form is the same act as its route above, with the same rule; a
    # page that shows a form reads what it is about.
    "page_contract": _contract("r", Interaction.READ),
    "page_answer": Protected(Requirement("Provenance", "c"), Interaction.OPERATION, "sign"),
    "page_progress_form": _contract("r", Interaction.READ),
    "page_progress": Protected(Requirement("Provenance", "c"), Interaction.OPERATION, "progress"),
    "page_proposal_form": _contract("r", Interaction.READ),
    "page_proposal": Protected(Requirement("Provenance", "c"), Interaction.OPERATION, "proposal"),
    "page_relatives": Protected(Requirement("Consent", "s"), Interaction.SEARCH),
    "page_grant": Protected(Requirement("Consent", "c"), Interaction.CREATE),
    "page_revoke_form": Protected(Requirement("Consent", "s"), Interaction.SEARCH),
    "page_revoke": Protected(Requirement("Consent", "u"), Interaction.UPDATE),
    "register_webhook": _webhook("c", Interaction.CREATE),
    "list_webhooks": _webhook("s", Interaction.SEARCH),
    "read_webhook": _webhook("r", Interaction.READ),
    "delete_webhook": _webhook("d", Interaction.DELETE),
}


_FHIR_INTERACTIONS: dict[str, tuple[Permission, Interaction]] = {
    "read": ("r", Interaction.READ),
    "vread": ("r", Interaction.VREAD),
    "history": ("r", Interaction.HISTORY),
    "history-type": ("r", Interaction.TYPE_HISTORY),
    "search": ("s", Interaction.SEARCH),
    "page": ("s", Interaction.SEARCH),
    "coherent-plan": ("s", Interaction.SEARCH),
    "create": ("c", Interaction.CREATE),
    "update": ("u", Interaction.UPDATE),
    "find": ("s", Interaction.SEARCH),
    "book": ("u", Interaction.OPERATION),
    "hold": ("u", Interaction.OPERATION),
    "release": ("u", Interaction.OPERATION),
    "propose": ("u", Interaction.OPERATION),
    "sign": ("c", Interaction.OPERATION),
    "progress": ("c", Interaction.OPERATION),
    "proposal": ("c", Interaction.OPERATION),
}
RULES["fhir_capabilities"] = Public.CAPABILITIES
RULES["conformance_read"] = Public.CONFORMANCE
RULES["conformance_search"] = Public.CONFORMANCE
RULES["smart_configuration"] = Public.DISCOVERY
RULES["local_issuer_keys"] = Public.DISCOVERY
RULES["local_issuer_token"] = Public.ISSUING
# A contract's transaction changes it; creating one needs CarePlan.c as well, checked inside.
RULES["fhir_transaction"] = Protected(Requirement("CarePlan", "u"), Interaction.TRANSACTION)
# Checking a contract's Bundle is for whoever may send it; nothing stored is read.
RULES["fhir_validate_bundle"] = _contract("u", Interaction.OPERATION, "validate")
RULES.update(
    {
        fhir_route(interaction, kind): Protected(
            Requirement(kind, _FHIR_INTERACTIONS[interaction][0]),
            _FHIR_INTERACTIONS[interaction][1],
        )
        for kind, offered in INTERACTIONS.items()
        for interaction in offered
    }
)
RULES[fhir_route("book", "Appointment")] = _booking("book")
RULES[fhir_route("hold", "Appointment")] = _booking("hold")
RULES[fhir_route("release", "Appointment")] = _booking("release")
RULES[fhir_route("propose", "CarePlan")] = RULES["propose_contract"]
RULES[fhir_route("sign", "CarePlan")] = RULES["sign_contract"]
RULES[fhir_route("progress", "CarePlan")] = RULES["report_progress"]
RULES[fhir_route("proposal", "CarePlan")] = RULES["add_proposal"]
# The patient's leaves for relatives, as the FHIR Consents they are.
RULES[fhir_route("search", "Consent")] = RULES["list_consents"]
RULES[fhir_route("read", "Consent")] = Protected(Requirement("Consent", "r"), Interaction.READ)
RULES[fhir_route("create", "Consent")] = RULES["grant_consent"]
RULES[fhir_route("update", "Consent")] = RULES["revoke_consent"]


def rule_for(route_name: str) -> Protected | Public | None:
    """The rule of the route named ``route_name``; None means no rule, so no access."""
    return RULES.get(route_name)
