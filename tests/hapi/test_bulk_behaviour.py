"""HAPI behaviour the bulk import and export (``fhir_service.sync.bulk``) are built on."""

from __future__ import annotations

import httpx

from tests.support import load_data


def test_an_identifier_with_only_a_system_matches_every_value_of_it(
    fhir: httpx.Client, system: str
) -> None:
    for value in ("a", "b", "c"):
        fhir.post("/Patient", json=load_data("hapi/patient.json", system=system, value=value))
    fhir.post("/Patient", json=load_data("hapi/patient.json", system=f"{system}-x", value="a"))

    found = fhir.get("/Patient", params={"identifier": f"{system}|", "_summary": "count"})

    assert found.status_code == 200, found.text
    assert found.json()["total"] == 3


def test_offset_pages_sorted_by_pid_follow_creation_and_carry_their_includes(
    fhir: httpx.Client, system: str
) -> None:
    organization = fhir.post("/Organization", json={"resourceType": "Organization"}).json()
    created = []
    for value in "54321":
        patient = load_data("hapi/patient.json", system=system, value=value)
        patient["managingOrganization"] = {"reference": f"Organization/{organization['id']}"}
        created.append(fhir.post("/Patient", json=patient).json()["id"])

    pages = []
    for offset in (0, 2, 4):
        page = fhir.get(
            "/Patient",
            params={
                "identifier": f"{system}|",
                "_sort": "_pid",
                "_count": "2",
                "_offset": str(offset),
                "_include": "Patient:organization",
            },
        ).json()
        # Each page is one request holding what it matched and what those refer to.
        modes = {e["resource"]["id"]: e["search"]["mode"] for e in page["entry"]}
        pages.append([i for i, mode in modes.items() if mode == "match"])
        assert modes[organization["id"]] == "include"

    assert pages == [created[0:2], created[2:4], created[4:]]


def test_a_conditional_create_matching_two_resources_fails_the_transaction_with_412(
    fhir: httpx.Client, system: str
) -> None:
    patient = load_data("hapi/patient.json", system=system, value="twin")
    for _ in range(2):
        fhir.post("/Patient", json=patient)
    entry = {
        "fullUrl": "urn:uuid:2b0ef3c4-5e2b-4d4e-9b47-4f51e0f1b6a1",
        "resource": patient,
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={system}|twin"},
    }

    response = fhir.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    )

    assert response.status_code == 412, response.text
    assert "HAPI-0958" in response.text
    assert "matched 2 resources" in response.text
