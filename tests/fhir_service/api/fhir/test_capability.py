"""Our CapabilityStatement, built from a statement HAPI gives: what is offered, and only that."""

from __future__ import annotations

from typing import Any

from fhir_service.api.fhir.capability import statement_from as capability_statement

BASE = "https://contracts.example/fhir"
# What a freshly started HAPI says: its own parameters, not yet ours, and types we do not offer.
HAPI: dict[str, Any] = {
    "resourceType": "CapabilityStatement",
    "software": {"name": "HAPI FHIR Server"},
    "implementation": {"url": "http://hapi.internal:8080/fhir"},
    "rest": [
        {
            "resource": [
                {
                    "type": "CarePlan",
                    "searchParam": [
                        {"name": "subject", "type": "reference", "definition": "x"},
                        {"name": "_id", "type": "token"},
                    ],
                },
                {"type": "Observation", "searchParam": [{"name": "code", "type": "token"}]},
            ]
        }
    ],
}


def test_our_search_parameters_are_listed_before_hapi_names_them() -> None:
    statement = capability_statement(HAPI, BASE)

    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    careplan = {p["name"] for p in resources["CarePlan"]["searchParam"]}
    careteam = {p["name"] for p in resources["CareTeam"]["searchParam"]}
    assert {"subject", "_id", "responsible-clinician", "contract-status"} <= careplan
    assert "care-contact" in careteam
    assert "Observation" not in resources


def test_nothing_of_hapis_own_is_shown() -> None:
    statement = capability_statement(HAPI, BASE)

    assert statement["implementation"]["url"] == BASE
    assert "HAPI" not in str(statement)
    assert "hapi.internal" not in str(statement)
