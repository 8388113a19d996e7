"""The resource types the FHIR endpoint serves, and which interactions each one offers."""

from __future__ import annotations

__all__ = ["AUDIT_TYPES", "CONTRACT_TYPES", "INTERACTIONS", "REFERENCED_TYPES", "route_name"]

CONTRACT_TYPES = ("CarePlan", "CareTeam", "Goal", "Appointment")
"""A contract's records: read, searched and followed through their history."""

AUDIT_TYPES = ("Provenance", "AuditEvent")
"""The audit trail: read and searched by auditors."""

REFERENCED_TYPES = (
    "Patient",
    "RelatedPerson",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "HealthcareService",
    "Schedule",
    "Slot",
)
"""What a contract's records and the booking operations name: read and searched, within the
caller's walls, so that every reference we give can be followed."""

_READ = ("read", "vread", "history", "history-type", "search", "page")
_RECORD = (*_READ, "create", "update")

INTERACTIONS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(CONTRACT_TYPES, _RECORD),
    # A contract is more than its CarePlan: it is created as a transaction Bundle of its
    # records. The coherent plan gathers a patient's contracts in force in one Bundle.
    # The care unit puts a version to the patient; each party answers it in their own name,
    # reports how activities go, and the patient proposes changes.
    "CarePlan": (
        "coherent-plan",
        "propose",
        "sign",
        "progress",
        "proposal",
        *(i for i in _RECORD if i != "create"),
    ),
    # Booking platforms that speak FHIR find free times and book agreed times (IHE Scheduling).
    "Appointment": ("find", "hold", "book", "release", *_RECORD),
    **dict.fromkeys(REFERENCED_TYPES, _READ),
    # A care unit's EHR defines its time types, each a HealthcareService.
    "HealthcareService": _RECORD,
    **dict.fromkeys(AUDIT_TYPES, _READ),
}
"""Per type, the routes it has; ``history`` is a record's, ``history-type`` every record's of
the type; ``page`` follows a search's paging links, ``coherent-plan``
is the ``$coherent-plan`` operation, ``create`` and ``update`` write one record of a contract,
``find``, ``hold``, ``book`` and ``release`` are ``Appointment/$find``, ``$hold``, ``$book``
and ``$release``, ``propose``, ``sign``,
``progress`` and ``proposal`` ``CarePlan/{id}/$propose`` and the like."""


def route_name(interaction: str, resource_type: str) -> str:
    """The name of the route of ``interaction`` on ``resource_type``, as the access rules key it."""
    return f"fhir_{interaction}_{resource_type}"
