"""``CarePlan/$coherent-plan``: the coherent plan as a FHIR Bundle.

The same plan as ``GET /patients/{patient}/plan`` (who may read it and what they see come from
`fhir_service.records.plan_access`), as the stored FHIR records: the CarePlans in force as matches,
their Goals, CareTeams and Appointments, the Patient and the directory records they name as
includes. A CarePlan names only records the answer holds: the goals and times withheld from the
reader are taken out of it (`subset_naming`), ids and all. Two HAPI requests: the contracts,
then their records.
"""

from __future__ import annotations

from typing import Any

from fhir_service.contract import Contract
from fhir_service.contract.plan import PLAN_STATUSES
from fhir_service.errors import (
    InvalidRequestError,
    issue,
)
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.ownership import CONTRACT_SYSTEMS, contract_of
from fhir_service.records.guard import subset_naming
from fhir_service.records.plan_access import readable_plan
from fhir_service.records.reads import CallerReads
from fhir_service.security.access import identifier_named

__all__ = ["coherent_plan"]

Resource = dict[str, Any]

_WITHHELD = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "information",
            "code": "suppressed",
            "diagnostics": "Some of the patient's records are not shown to you.",
        }
    ],
}


async def coherent_plan(records: CallerReads, asked: str | None) -> Resource:
    """The plan of the patient ``asked`` names (the ``patient`` parameter, ``system|value``),
    as the caller may see it: a searchset Bundle without its links."""
    if not asked:
        raise InvalidRequestError(
            "name the patient: ?patient=system|value",
            [issue("name the patient: system|value", "required", "patient")],
        )
    patient = identifier_named(asked, patient=True)
    if patient is None:
        raise InvalidRequestError(
            f"patient={asked}: not a patient's identifier",
            [issue(f"{asked} is not a patient's identifier", "invalid", "patient")],
        )
    walls = records.access.compartment
    readable = await readable_plan(records.store, patient, walls, records.witness)
    in_force = [c for c in readable.contracts if c.status in PLAN_STATUSES]
    entries = [_entry(r) for r in await _records(records.hapi, in_force)]
    if readable.withheld:
        entries.append({"resource": _WITHHELD, "search": {"mode": "outcome"}})
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


async def _records(hapi: HapiClient, contracts: list[Contract]) -> list[Resource]:
    """The stored records of ``contracts``, less the goals and times disclosure left out, and
    their CarePlans less the references to those and the activities it left out."""
    if not contracts:
        return []
    shown = {c.id: c for c in contracts}
    tokens = ",".join(f"{urls.ID_CONTRACT}|{c.id}" for c in contracts)
    found = await hapi.search(
        "CarePlan",
        [
            ("identifier", tokens),
            ("_include", "CarePlan:goal"),
            ("_include", "CarePlan:care-team"),
            ("_include", "CarePlan:activity-reference"),
            ("_include", "CarePlan:subject"),
            ("_include", "CarePlan:responsible-clinician"),
            ("_include", "CarePlan:responsible-unit"),
            ("_count", str(len(contracts))),
        ],
        max_pages=10,
    )
    kept = [r for r in found.resources if _kept(r, shown)]
    held = frozenset(f"{r.get('resourceType')}/{r.get('id')}" for r in kept)
    return [subset_naming(r, held, _activities(r, shown)) for r in kept]


def _activities(resource: Resource, shown: dict[str, Contract]) -> frozenset[str]:
    """The keys of the activities the disclosed contract of ``resource`` (a CarePlan) holds."""
    contract = shown.get(contract_of(resource) or "")
    return frozenset() if contract is None else frozenset(a.key for a in contract.activities)


def _kept(resource: Resource, shown: dict[str, Contract]) -> bool:
    kind = resource.get("resourceType")
    contract_id = contract_of(resource)
    if kind in ("CarePlan", "CareTeam"):
        return contract_id in shown
    if kind in ("Goal", "Appointment"):
        contract = shown.get(contract_id or "")
        if contract is None:
            return False
        parts = contract.goals if kind == "Goal" else contract.agreed_times
        system = CONTRACT_SYSTEMS[str(kind)]
        value = next(
            (
                str(i.get("value"))
                for i in resource.get("identifier", [])
                if i.get("system") == system
            ),
            "",
        )
        return value.split("/", 1)[-1] in {part.key for part in parts}
    # The Patient and the directory records the plan's CarePlans name.
    return True


def _entry(resource: Resource) -> Resource:
    mode = "match" if resource.get("resourceType") == "CarePlan" else "include"
    return {"resource": resource, "search": {"mode": mode}}
