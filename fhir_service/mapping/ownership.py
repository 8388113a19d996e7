"""Which contract and which patient a stored FHIR resource belongs to, read from the resource.

Records a contract owns carry an identifier of our system for their type whose value is
``<contract id>/<key>`` (the CarePlan's is the contract id itself); contract ids hold no ``/``.
A record a sender's plan held beside the contract's parts (``mapping/sent.py``), of any type,
carries one of ``urls.ID_RECORD`` in the same form.
"""

from __future__ import annotations

from typing import Any

from fhir_service.mapping import urls

__all__ = ["CONTRACT_SYSTEMS", "contract_of", "patient_references"]

Resource = dict[str, Any]

CONTRACT_SYSTEMS = {
    "CarePlan": urls.ID_CONTRACT,
    "CareTeam": urls.ID_CARE_TEAM,
    "Goal": urls.ID_GOAL,
    "Appointment": urls.ID_AGREED_TIME,
}
"""The identifier system that ties a resource of each type to its contract."""


def contract_of(resource: Resource) -> str | None:
    """The id of the contract ``resource`` belongs to, or None if it belongs to none."""
    systems = {CONTRACT_SYSTEMS.get(str(resource.get("resourceType"))), urls.ID_RECORD}
    for identifier in resource.get("identifier", []):
        value = identifier.get("value")
        if identifier.get("system") in systems and isinstance(value, str):
            return value.split("/")[0]
    return None


def patient_references(resource: Resource) -> set[str]:
    """Every ``Patient/<id>`` reference that says whose data ``resource`` is."""
    references = [resource.get("subject", {}).get("reference")]
    references.append(resource.get("patient", {}).get("reference"))
    references += [p.get("actor", {}).get("reference") for p in resource.get("participant", [])]
    return {r for r in references if isinstance(r, str) and r.startswith("Patient/")}
