"""The REST features the service builds on: conditional update and delete, _revinclude, _history."""

from __future__ import annotations

import httpx

from tests.support import load_data


def _careplan(system: str, value: str, status: str = "draft") -> dict[str, object]:
    careplan: dict[str, object] = load_data("hapi/careplan-valid.json")
    return careplan | {"status": status, "identifier": [{"system": system, "value": value}]}


def test_conditional_update_creates_then_updates_the_match(fhir: httpx.Client, system: str) -> None:
    url = f"/CarePlan?identifier={system}|cu"

    created = fhir.put(url, json=_careplan(system, "cu"))
    updated = fhir.put(url, json=_careplan(system, "cu", status="active"))

    assert created.status_code == 201, created.text
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.json()["status"] == "active"


def test_conditional_delete_removes_the_match(fhir: httpx.Client, system: str) -> None:
    created = fhir.post("/CarePlan", json=_careplan(system, "cd")).json()

    deleted = fhir.delete("/CarePlan", params={"identifier": f"{system}|cd"})

    assert deleted.status_code in (200, 204), deleted.text
    assert fhir.get(f"/CarePlan/{created['id']}").status_code == 410
    found = fhir.get("/CarePlan", params={"identifier": f"{system}|cd"}).json()
    assert found["total"] == 0


def test_revinclude_brings_the_careplans_pointing_at_a_careteam(
    fhir: httpx.Client, system: str
) -> None:
    fhir.post("", json=load_data("hapi/contract-transaction.json", system=system))

    found = fhir.get(
        "/CareTeam",
        params={"identifier": f"{system}|careteam", "_revinclude": "CarePlan:care-team"},
    ).json()

    kinds = sorted(e["resource"]["resourceType"] for e in found["entry"])
    assert kinds == ["CarePlan", "CareTeam"]
    modes = {e["resource"]["resourceType"]: e["search"]["mode"] for e in found["entry"]}
    assert modes == {"CareTeam": "match", "CarePlan": "include"}


def test_history_keeps_every_version(fhir: httpx.Client, system: str) -> None:
    first = fhir.post("/CarePlan", json=_careplan(system, "h")).json()
    fhir.put(f"/CarePlan/{first['id']}", json=first | {"status": "active"})

    history = fhir.get(f"/CarePlan/{first['id']}/_history").json()
    version_one = fhir.get(f"/CarePlan/{first['id']}/_history/1").json()

    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert version_one["status"] == "draft"
