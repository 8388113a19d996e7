"""A contract's resources go into HAPI as one transaction and come back intact."""

from __future__ import annotations

import httpx

from tests.support import load_data


def _post_transaction(fhir: httpx.Client, bundle: dict[str, object]) -> dict[str, object]:
    response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert body["type"] == "transaction-response"
    return body


def _search(fhir: httpx.Client, resource_type: str, **params: str) -> dict[str, object]:
    response = fhir.get(f"/{resource_type}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_transaction_creates_careplan_careteam_and_appointment_that_read_back_intact(
    fhir: httpx.Client, system: str
) -> None:
    bundle = load_data("hapi/contract-transaction.json", system=system)

    result = _post_transaction(fhir, bundle)

    statuses = [entry["response"]["status"] for entry in result["entry"]]  # type: ignore[index, union-attr]
    assert statuses == ["201 Created"] * 5
    found = _search(
        fhir,
        "CarePlan",
        identifier=f"{system}|careplan",
        _include="CarePlan:care-team",
        **{"_include:iterate": "CareTeam:participant"},
    )
    resources = {e["resource"]["resourceType"]: e["resource"] for e in found["entry"]}  # type: ignore[index, union-attr]
    careplan, careteam = resources["CarePlan"], resources["CareTeam"]
    sent_careplan = bundle["entry"][4]["resource"]
    assert careplan["title"] == sent_careplan["title"]
    assert careplan["status"] == "active"
    assert careplan["activity"][1]["detail"] == sent_careplan["activity"][1]["detail"] | {
        "performer": [{"reference": careplan["subject"]["reference"]}]
    }
    assert careplan["careTeam"][0]["reference"] == f"CareTeam/{careteam['id']}"
    assert careteam["participant"][0]["role"][0]["text"] == "fast vårdkontakt"
    assert resources["Practitioner"]["name"][0]["family"] == "Berg"
    appointment_ref = careplan["activity"][0]["reference"]["reference"]
    appointment = fhir.get(f"/{appointment_ref}").json()
    assert appointment["description"] == "Återbesök knäprotes"
    assert appointment["start"] == "2026-12-01T09:00:00+01:00"
    assert appointment["participant"][0]["actor"] == careplan["subject"]


def test_reposting_the_transaction_creates_nothing_new(fhir: httpx.Client, system: str) -> None:
    bundle = load_data("hapi/contract-transaction.json", system=system)
    first = _post_transaction(fhir, bundle)

    second = _post_transaction(fhir, bundle)

    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK"] * 5  # type: ignore[index, union-attr]
    first_locations = [e["response"]["location"] for e in first["entry"]]  # type: ignore[index, union-attr]
    second_locations = [e["response"]["location"] for e in second["entry"]]  # type: ignore[index, union-attr]
    assert second_locations == first_locations
    for resource_type, value in [
        ("Patient", "patient"),
        ("CarePlan", "careplan"),
        ("CareTeam", "careteam"),
        ("Appointment", "appointment"),
    ]:
        assert _search(fhir, resource_type, identifier=f"{system}|{value}")["total"] == 1
