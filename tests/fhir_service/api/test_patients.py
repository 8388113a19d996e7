"""The coherent plan against the real HAPI: across care units, within each reader's walls."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.auth import TestIssuer
from tests.service_app import ready_app
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
PROBLEM_JSON = "application/problem+json"
# The stroke example's municipality, which takes part through activities only.
MUNICIPALITY = "hsa-id|SE2120000662-1001"


@pytest.fixture
def service(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[TestClient]:
    with ready_app(conformance_loaded, tmp_path, issuer) as client:
        yield client


def _example(name: str, personnummer: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    data["id"] = f"plan-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"] = {"kind": "personnummer", "value": personnummer}
    data.update(changes)
    return data


def _unit(contract: dict[str, Any]) -> str:
    identifier = contract["responsible_clinician"]["organization"]["identifier"]
    return f"{identifier['kind']}|{identifier['value']}"


@pytest.fixture
def patients_contracts(service: TestClient, issuer: TestIssuer) -> dict[str, dict[str, Any]]:
    """One patient's contracts with three units: two in force (one goal restricted), a draft."""
    personnummer = unique_personnummer()
    knee = _example("knee-replacement", personnummer)
    knee["goals"][0]["confidentiality"] = "restricted"
    contracts = {
        "stroke": _example("stroke-rehabilitation", personnummer),
        "knee": knee,
        "draft": _example("elderly-psychiatry", personnummer),
    }
    for contract in contracts.values():
        headers = issuer.headers("ehr", organization=_unit(contract))
        created = service.post("/contracts", json=contract, headers=headers)
        assert created.status_code == 201, created.text
    return contracts


def _patient(contract: dict[str, Any]) -> str:
    return f"personnummer|{contract['patient']['identifier']['value']}"


def _plan_of(contract: dict[str, Any]) -> str:
    return f"/patients/{_patient(contract)}/plan"


def test_the_patient_sees_every_unit_s_contract_in_force_minus_what_is_withheld(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    stroke, knee = patients_contracts["stroke"], patients_contracts["knee"]
    patient = issuer.headers(
        "patient", patient=f"personnummer|{stroke['patient']['identifier']['value']}"
    )

    response = service.get(_plan_of(stroke), headers=patient)

    assert response.status_code == 200, response.text
    plan = response.json()
    assert sorted(c["id"] for c in plan["contracts"]) == sorted([stroke["id"], knee["id"]])
    assert plan["withheld"] is True
    goals = {g["key"] for g in plan["goals"]}
    assert knee["goals"][0]["key"] not in goals
    assert knee["goals"][1]["key"] in goals
    assert plan["activities"][0]["owner"] == "patient"
    assert patients_contracts["draft"]["id"] not in response.text
    assert knee["goals"][0]["description"] not in response.text


def test_a_unit_taking_part_reads_the_whole_plan_and_its_own_restricted_content(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    stroke, knee = patients_contracts["stroke"], patients_contracts["knee"]

    by_municipality = service.get(
        _plan_of(stroke), headers=issuer.headers("ehr", organization=MUNICIPALITY)
    )
    by_knee_unit = service.get(
        _plan_of(stroke), headers=issuer.headers("clinician", organization=_unit(knee))
    )

    assert by_municipality.status_code == 200, by_municipality.text
    assert sorted(c["id"] for c in by_municipality.json()["contracts"]) == sorted(
        [stroke["id"], knee["id"]]
    )
    assert knee["goals"][0]["key"] not in {g["key"] for g in by_municipality.json()["goals"]}
    assert by_municipality.json()["withheld"] is True
    assert knee["goals"][0]["key"] in {g["key"] for g in by_knee_unit.json()["goals"]}


def test_a_unit_without_a_part_in_the_patient_s_contracts_gets_404(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    stranger = issuer.headers("ehr", organization="hsa-id|SE2321000065-9999")

    response = service.get(_plan_of(patients_contracts["stroke"]), headers=stranger)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == PROBLEM_JSON
    assert patients_contracts["stroke"]["title"] not in response.text


def test_a_patient_cannot_read_another_patient_s_plan(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    other = issuer.headers("patient", patient=f"personnummer|{unique_personnummer()}")

    response = service.get(_plan_of(patients_contracts["stroke"]), headers=other)

    assert response.status_code == 403
    assert patients_contracts["stroke"]["title"] not in response.text


@pytest.mark.parametrize("patient", ["hsa-id|SE2321000065-1187", "personnummer|19121212-1213"])
def test_a_plan_of_something_not_a_patient_s_identifier_gets_422(
    service: TestClient, issuer: TestIssuer, patient: str
) -> None:
    response = service.get(
        f"/patients/{patient}/plan", headers=issuer.headers("ehr", organization=MUNICIPALITY)
    )

    assert response.status_code == 422
    assert response.headers["Content-Type"] == PROBLEM_JSON


def test_the_patient_reads_a_contract_with_restricted_parts_left_out_and_is_told(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    knee, draft = patients_contracts["knee"], patients_contracts["draft"]
    patient = issuer.headers(
        "patient", patient=f"personnummer|{knee['patient']['identifier']['value']}"
    )

    read = service.get(f"/contracts/{knee['id']}", headers=patient)
    read_draft = service.get(f"/contracts/{draft['id']}", headers=patient)
    searched = service.get("/contracts", headers=patient)

    assert read.status_code == 200
    assert read.headers["Withheld"] == "true"
    assert [g["key"] for g in read.json()["goals"]] == [knee["goals"][1]["key"]]
    assert read_draft.status_code == 404
    assert searched.json()["withheld"] is True
    assert draft["id"] not in searched.text
    assert knee["goals"][0]["description"] not in searched.text


def test_a_patient_searching_by_their_own_number_written_with_a_hyphen_finds_it(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    value = patients_contracts["stroke"]["patient"]["identifier"]["value"]
    hyphenated = f"{value[:8]}-{value[8:]}"
    patient = issuer.headers("patient", patient=f"personnummer|{value}")

    response = service.get(f"/contracts?patient=personnummer|{hyphenated}", headers=patient)

    assert response.status_code == 200, response.text
    assert len(response.json()["contracts"]) == 2


def test_the_plan_in_json_names_its_codes_in_norwegian_when_asked(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    stroke = patients_contracts["stroke"]
    headers = {
        **issuer.headers("patient", patient=_patient(stroke)),
        "Accept-Language": "nb-NO, sv;q=0.5",
    }

    response = service.get(_plan_of(stroke), headers=headers)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Language"] == "nb"
    assert "accept-language" in response.headers["Vary"].lower()
    plan = response.json()
    assert plan["language"] == "nb"
    labels = plan["labels"]
    assert labels["contract-status"] == {"agreed": "Avtalt"}
    assert labels["activity-owner"]["patient"] == "Pasienten"
    assert labels["activity-category"]["exercise"] == "Trening"
    assert labels["care-team-role"]["fast-vardkontakt"] == "Fast kontakt"
    categories = {a["category"] for group in plan["activities"] for a in group["activities"]}
    assert set(labels["activity-category"]) == categories


def test_lang_in_the_query_names_the_plan_s_codes_in_that_language_swedish_by_default(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    stroke = patients_contracts["stroke"]
    patient = issuer.headers("patient", patient=_patient(stroke))

    english = service.get(
        _plan_of(stroke), params={"lang": "en"}, headers={**patient, "Accept-Language": "nb"}
    )
    swedish = service.get(_plan_of(stroke), headers=patient)

    assert english.headers["Content-Language"] == "en"
    assert english.json()["labels"]["contract-status"] == {"agreed": "Agreed"}
    assert swedish.headers["Content-Language"] == "sv"
    assert swedish.json()["labels"]["contract-status"] == {"agreed": "Överenskommet"}


def test_the_plan_says_it_varies_with_accept_and_accept_language_in_both_forms(
    service: TestClient, issuer: TestIssuer, patients_contracts: dict[str, dict[str, Any]]
) -> None:
    stroke = patients_contracts["stroke"]
    patient = issuer.headers("patient", patient=_patient(stroke))

    page = service.get(_plan_of(stroke), headers={**patient, "Accept": "text/html"})
    answer = service.get(_plan_of(stroke), headers=patient)

    for response in (page, answer):
        assert response.status_code == 200, response.text
        vary = {name.strip().lower() for name in response.headers["Vary"].split(",")}
        assert {"accept", "accept-language"} <= vary
