"""HAPI's own behaviour under conditional writes, pinned down because later features rely on it.

What these tests found is written up in hapi/README.md; if a HAPI upgrade changes it, they fail.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx

from tests.support import load_data

CONCURRENT_WRITERS = 20
# How HAPI words the loser's 409: its own code on H2, the unique index's name on PostgreSQL.
CONSTRAINT_FAILURES = ("HAPI-2745", "hfj_res_search_url")


async def _concurrently(
    hapi_base_url: str, count: int, method: str, url: str, **kwargs: object
) -> list[httpx.Response]:
    headers = {"Content-Type": "application/fhir+json", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=hapi_base_url, timeout=120.0, limits=limits) as client:
        return await asyncio.gather(
            *(client.request(method, url, headers=headers, **kwargs) for _ in range(count))  # type: ignore[arg-type]
        )


def test_concurrent_identical_conditional_creates_make_one_resource_and_conflicts(
    hapi_base_url: str, fhir: httpx.Client, system: str
) -> None:
    patient = load_data("hapi/patient.json", system=system, value="racer")

    responses = asyncio.run(
        _concurrently(
            hapi_base_url,
            CONCURRENT_WRITERS,
            "POST",
            "/Patient",
            json=patient,
            headers={"If-None-Exist": f"identifier={system}|racer"},
        )
    )

    statuses = Counter(r.status_code for r in responses)
    # One writer creates it. The others either saw it (200) or lost the race on HAPI's unique
    # match-URL index (409 with HAPI-2745); never a second resource.
    assert statuses[201] == 1
    assert set(statuses) <= {200, 201, 409}
    for response in responses:
        if response.status_code == 409:
            assert any(
                marker in response.text.lower() for marker in map(str.lower, CONSTRAINT_FAILURES)
            )
    found = fhir.get("/Patient", params={"identifier": f"{system}|racer"}).json()
    assert found["total"] == 1


def test_concurrent_identical_transactions_make_one_careplan(
    hapi_base_url: str, fhir: httpx.Client, system: str
) -> None:
    bundle = load_data("hapi/contract-transaction.json", system=system)

    responses = asyncio.run(_concurrently(hapi_base_url, 10, "POST", "", json=bundle))

    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] >= 1
    assert set(statuses) <= {200, 409}
    found = fhir.get("/CarePlan", params={"identifier": f"{system}|careplan"}).json()
    assert found["total"] == 1


def test_entries_sharing_one_if_none_exist_collapse_into_one_resource(
    fhir: httpx.Client, system: str
) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": system, "value": "hsa"}],
    }
    first_url, second_url = (f"urn:uuid:{uuid.uuid4()}" for _ in range(2))
    conditional = {
        "method": "POST",
        "url": "Practitioner",
        "ifNoneExist": f"identifier={system}|hsa",
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": first_url, "resource": practitioner, "request": conditional},
            {"fullUrl": second_url, "resource": practitioner, "request": conditional},
            {
                "resource": {
                    "resourceType": "CareTeam",
                    "identifier": [{"system": system, "value": "team"}],
                    "participant": [
                        {"member": {"reference": first_url}},
                        {"member": {"reference": second_url}},
                    ],
                },
                "request": {"method": "POST", "url": "CareTeam"},
            },
        ],
    }

    response = fhir.post("", json=bundle)

    assert response.status_code == 200, response.text
    # HAPI merges the duplicate entries: the response has one entry fewer than the request,
    # so a response can not be matched to the request by position in this case.
    entries = response.json()["entry"]
    assert len(entries) == 2
    practitioners = fhir.get("/Practitioner", params={"identifier": f"{system}|hsa"}).json()
    assert practitioners["total"] == 1
    practitioner_id = practitioners["entry"][0]["resource"]["id"]
    team = fhir.get("/CareTeam", params={"identifier": f"{system}|team"}).json()
    members = [p["member"]["reference"] for p in team["entry"][0]["resource"]["participant"]]
    assert members == [f"Practitioner/{practitioner_id}"] * 2


def test_if_match_on_a_transaction_entry_rejects_a_stale_version(
    fhir: httpx.Client, system: str
) -> None:
    created = fhir.post("/Patient", json=load_data("hapi/patient.json", system=system, value="v"))
    patient = created.json()
    patient["active"] = True
    updated = fhir.put(f"/Patient/{patient['id']}", json=patient)
    assert updated.json()["meta"]["versionId"] == "2"
    patient["active"] = False

    def update_if_match(version: str) -> httpx.Response:
        entry = {
            "resource": patient,
            "request": {
                "method": "PUT",
                "url": f"Patient/{patient['id']}",
                "ifMatch": f'W/"{version}"',
            },
        }
        return fhir.post(
            "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        )

    stale = update_if_match("1")

    assert stale.status_code == 409
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert "is not the current version" in stale.text
    assert fhir.get(f"/Patient/{patient['id']}").json()["active"] is True

    current = update_if_match("2")

    assert current.status_code == 200, current.text
    assert current.json()["entry"][0]["response"]["etag"] in ('W/"3"', "3")
    assert fhir.get(f"/Patient/{patient['id']}").json()["active"] is False
