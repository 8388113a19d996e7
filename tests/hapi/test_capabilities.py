"""What HAPI's CapabilityStatement promises: the server the service is built on."""

from __future__ import annotations

import httpx


def _resource(statement: dict[str, object], resource_type: str) -> dict[str, object]:
    rest = statement["rest"][0]  # type: ignore[index]
    return next(r for r in rest["resource"] if r["type"] == resource_type)


def test_speaks_fhir_r4_with_transactions(fhir: httpx.Client) -> None:
    statement = fhir.get("/metadata").json()

    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    system_interactions = {i["code"] for i in statement["rest"][0]["interaction"]}
    assert {"transaction", "history-system"} <= system_interactions


def test_contract_resources_support_conditional_writes_history_and_includes(
    fhir: httpx.Client,
) -> None:
    statement = fhir.get("/metadata").json()

    for resource_type in ("CarePlan", "CareTeam", "Appointment", "Goal", "Slot", "Schedule"):
        resource = _resource(statement, resource_type)
        interactions = {i["code"] for i in resource["interaction"]}  # type: ignore[attr-defined]
        assert {"read", "vread", "create", "update", "history-instance"} <= interactions
        assert resource["conditionalCreate"] is True
        assert resource["conditionalUpdate"] is True
        assert resource["conditionalDelete"] in ("single", "multiple")
        assert resource["versioning"] == "versioned-update"
    careplan = _resource(statement, "CarePlan")
    assert "CarePlan:care-team" in careplan["searchInclude"]  # type: ignore[operator]
    assert "Provenance:target" in careplan["searchRevInclude"]  # type: ignore[operator]


def test_subscription_resource_is_served(fhir: httpx.Client) -> None:
    statement = fhir.get("/metadata").json()

    subscription = _resource(statement, "Subscription")
    assert {"create", "read", "delete"} <= {i["code"] for i in subscription["interaction"]}  # type: ignore[attr-defined]
