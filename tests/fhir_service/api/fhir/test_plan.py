"""GET /fhir/CarePlan/$coherent-plan against the real HAPI: one patient's contracts with three
care units, as the patient, a unit taking part and a stranger may see them.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.auth import TestIssuer
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
MUNICIPALITY = "hsa-id|SE2120000662-1001"
OUR_BASE = "http://testserver/fhir"


def _unit(contract: dict[str, Any]) -> str:
    identifier = contract["responsible_clinician"]["organization"]["identifier"]
    return f"{identifier['kind']}|{identifier['value']}"


@pytest.fixture(scope="module")
def contracts(service: TestClient, issuer: TestIssuer) -> dict[str, dict[str, Any]]:
    """Stroke (with the municipality taking part), knee with a restricted goal, a draft."""
    personnummer = unique_personnummer()
    found = {}
    for key, name in (
        ("stroke", "stroke-rehabilitation"),
        ("knee", "knee-replacement"),
        ("draft", "elderly-psychiatry"),
    ):
        data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
        data["id"] = f"plan-{uuid.uuid4().hex[:16]}"
        data["patient"]["identifier"] = {"kind": "personnummer", "value": personnummer}
        if key == "knee":
            data["goals"][0]["confidentiality"] = "restricted"
        headers = issuer.headers("ehr", organization=_unit(data))
        assert service.post("/contracts", json=data, headers=headers).status_code == 201
        found[key] = data
    return found


def _plan(service: TestClient, contracts: dict[str, Any], headers: dict[str, str]) -> Any:
    personnummer = contracts["stroke"]["patient"]["identifier"]["value"]
    system = "http://electronichealth.se/identifier/personnummer"
    return service.get(
        "/fhir/CarePlan/$coherent-plan",
        params={"patient": f"{system}|{personnummer}"},
        headers=headers,
    )


def _keys(bundle: dict[str, Any], kind: str) -> set[str]:
    return {
        e["resource"]["identifier"][0]["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == kind
    }


def test_the_patient_gets_every_contract_in_force_minus_what_is_withheld(
    service: TestClient, issuer: TestIssuer, contracts: dict[str, dict[str, Any]]
) -> None:
    personnummer = contracts["stroke"]["patient"]["identifier"]["value"]
    patient = issuer.headers("patient", patient=f"personnummer|{personnummer}")

    response = _plan(service, contracts, patient)

    assert response.status_code == 200, response.text
    bundle = response.json()
    stroke, knee = contracts["stroke"], contracts["knee"]
    assert _keys(bundle, "CarePlan") == {stroke["id"], knee["id"]}
    matches = {
        e["resource"]["resourceType"] for e in bundle["entry"] if e["search"]["mode"] == "match"
    }
    assert matches == {"CarePlan"}
    goals = _keys(bundle, "Goal")
    assert f"{knee['id']}/{knee['goals'][0]['key']}" not in goals
    assert f"{knee['id']}/{knee['goals'][1]['key']}" in goals
    assert {f"{stroke['id']}/{g['key']}" for g in stroke["goals"]} <= goals
    assert len(_keys(bundle, "Appointment")) == len(stroke["agreed_times"]) + len(
        knee["agreed_times"]
    )
    assert _keys(bundle, "CareTeam")
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes[0]["resource"]["issue"][0]["code"] == "suppressed"
    assert contracts["draft"]["id"] not in response.text
    assert knee["goals"][0]["description"] not in response.text
    assert all(e["fullUrl"].startswith(OUR_BASE) for e in bundle["entry"] if "fullUrl" in e)


def test_a_unit_taking_part_reads_the_plan_and_a_stranger_does_not(
    service: TestClient, issuer: TestIssuer, contracts: dict[str, dict[str, Any]]
) -> None:
    knee = contracts["knee"]

    by_municipality = _plan(service, contracts, issuer.headers("ehr", organization=MUNICIPALITY))
    by_knee_unit = _plan(service, contracts, issuer.headers("ehr", organization=_unit(knee)))
    by_stranger = _plan(
        service, contracts, issuer.headers("ehr", organization="hsa-id|SE2321000065-9999")
    )

    restricted = f"{knee['id']}/{knee['goals'][0]['key']}"
    assert by_municipality.status_code == 200, by_municipality.text
    assert restricted not in _keys(by_municipality.json(), "Goal")
    assert restricted in _keys(by_knee_unit.json(), "Goal")
    assert by_stranger.status_code == 404
    assert by_stranger.json()["resourceType"] == "OperationOutcome"
    assert knee["title"] not in by_stranger.text


@pytest.mark.parametrize(
    ("patient", "status"), [("personnummer|19121212-1213", 400), ("", 400), (None, 403)]
)
def test_another_patient_or_no_patient_is_refused(
    service: TestClient,
    issuer: TestIssuer,
    contracts: dict[str, dict[str, Any]],
    patient: str | None,
    status: int,
) -> None:
    someone = issuer.headers("patient", patient=f"personnummer|{unique_personnummer()}")
    if patient is None:
        response = _plan(service, contracts, someone)
    else:
        response = service.get(
            "/fhir/CarePlan/$coherent-plan", params={"patient": patient}, headers=someone
        )

    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_the_plan_is_the_same_asked_by_post_with_parameters(
    service: TestClient, issuer: TestIssuer, contracts: dict[str, dict[str, Any]]
) -> None:
    # As FHIR clients call an operation by default: POST with a Parameters body.
    personnummer = contracts["stroke"]["patient"]["identifier"]["value"]
    patient = issuer.headers("patient", patient=f"personnummer|{personnummer}")
    system = "http://electronichealth.se/identifier/personnummer"
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueIdentifier": {"system": system, "value": personnummer}}
        ],
    }

    posted = service.post(
        "/fhir/CarePlan/$coherent-plan",
        json=parameters,
        headers={**patient, "Content-Type": "application/fhir+json"},
    )
    unnamed = service.post(
        "/fhir/CarePlan/$coherent-plan",
        json={"resourceType": "Parameters"},
        headers={**patient, "Content-Type": "application/fhir+json"},
    )

    assert posted.status_code == 200, posted.text
    assert _keys(posted.json(), "CarePlan") == _keys(
        _plan(service, contracts, patient).json(), "CarePlan"
    )
    assert unnamed.status_code == 400
    assert "name the patient" in unnamed.json()["issue"][0]["diagnostics"]
