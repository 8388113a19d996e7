"""The contract routes against the real HAPI: versions, Idempotency-Key, and HAPI going away."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_service.api import create_app
from fhir_service.contract.model import MAX_AGREED_TIMES, MAX_GOALS
from fhir_service.mapping import urls
from fhir_service.settings import Settings
from tests.auth import TestIssuer
from tests.service_process import running_service
from tests.support import PYTHON_WORDS, unique_personnummer
from tests.tcp_proxy import running_proxy

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
PROBLEM_JSON = "application/problem+json"


# The example contracts' responsible care unit: the EHR tokens here act for it.
CARE_UNIT = "hsa-id|SE2321000065-1254"


def _client(
    hapi_url: str, tmp_path: Path, issuer: TestIssuer, hapi_timeout_seconds: float = 10
) -> TestClient:
    settings = Settings(
        hapi_url=hapi_url,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        hapi_timeout_seconds=hapi_timeout_seconds,
        **issuer.settings(),
    )
    return TestClient(
        create_app(settings),
        raise_server_exceptions=False,
        headers=issuer.headers("ehr", organization=CARE_UNIT),
    )


@pytest.fixture
def service(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[TestClient]:
    with _client(conformance_loaded, tmp_path, issuer) as client:
        _wait_until_ready(client)
        yield client


def _wait_until_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/ready").text
        time.sleep(0.2)


def _contract() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"api-{uuid.uuid4().hex[:16]}"
    return data


def _careplans(hapi_url: str, contract_id: str) -> int:
    found = httpx.get(
        f"{hapi_url}/CarePlan",
        params={"identifier": f"{urls.ID_CONTRACT}|{contract_id}", "_summary": "count"},
    )
    return int(found.json()["total"])


def test_a_contract_is_created_and_read_back_with_its_version(service: TestClient) -> None:
    contract = _contract()

    created = service.post("/contracts", json=contract)
    read = service.get(f"/contracts/{contract['id']}")

    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"/contracts/{contract['id']}"
    assert read.status_code == 200
    assert read.headers["ETag"] == created.headers["ETag"] == f'W/"{read.json()["version"]}"'
    assert read.json()["title"] == contract["title"]


def test_the_same_idempotency_key_and_body_get_the_first_answer_and_one_careplan(
    service: TestClient, conformance_loaded: str
) -> None:
    contract = _contract()
    key = {"Idempotency-Key": str(uuid.uuid4())}

    first = service.post("/contracts", json=contract, headers=key)
    again = service.post("/contracts", json=contract, headers=key)
    other_body = service.post("/contracts", json={**contract, "title": "Another"}, headers=key)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.headers["ETag"] == first.headers["ETag"]
    assert other_body.status_code == 422
    assert other_body.headers["Content-Type"] == PROBLEM_JSON
    assert "different request" in other_body.json()["detail"]
    assert _careplans(conformance_loaded, contract["id"]) == 1


def test_creating_an_existing_contract_without_a_key_is_a_conflict_naming_its_version(
    service: TestClient,
) -> None:
    contract = _contract()
    service.post("/contracts", json=contract)

    second = service.post("/contracts", json=contract)

    assert second.status_code == 409
    assert (
        second.json()["currentVersion"]
        == service.get(f"/contracts/{contract['id']}").json()["version"]
    )


def test_a_stale_if_match_is_refused_naming_the_current_version(service: TestClient) -> None:
    contract = _contract()
    first = service.post("/contracts", json=contract)
    version = first.json()["version"]
    changed = {**contract, "title": "Reviderad plan"}

    missing = service.put(f"/contracts/{contract['id']}", json=changed)
    updated = service.put(
        f"/contracts/{contract['id']}", json=changed, headers={"If-Match": f'W/"{version}"'}
    )
    stale = service.put(
        f"/contracts/{contract['id']}",
        json={**contract, "title": "Lost update"},
        headers={"If-Match": f'W/"{version}"'},
    )

    assert missing.status_code == 428
    assert updated.status_code == 200, updated.text
    assert updated.json()["title"] == "Reviderad plan"
    assert stale.status_code == 409
    assert stale.json()["currentVersion"] == updated.json()["version"]
    assert service.get(f"/contracts/{contract['id']}").json()["title"] == "Reviderad plan"


def test_the_lifecycle_runs_through_the_routes(service: TestClient) -> None:
    contract = _contract()
    etag = service.post("/contracts", json=contract).headers["ETag"]
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    agreements = [
        {"party": party, "agreed_at": now} for party in ("patient", "responsible-clinician")
    ]

    agreed = service.post(
        f"/contracts/{contract['id']}/agree",
        json={"agreements": agreements},
        headers={"If-Match": etag},
    )
    revised = service.post(
        f"/contracts/{contract['id']}/revise", headers={"If-Match": agreed.headers["ETag"]}
    )
    ended_twice = [
        service.post(f"/contracts/{contract['id']}/end", headers={"If-Match": e})
        for e in (revised.headers["ETag"], revised.headers["ETag"])
    ]

    assert agreed.status_code == 200, agreed.text
    assert agreed.json()["status"] == "agreed"
    assert revised.json()["status"] == "revised"
    assert ended_twice[0].json()["status"] == "ended"
    assert ended_twice[1].status_code == 409


def test_bad_input_gets_a_problem_naming_the_field_and_writes_nothing(
    service: TestClient, conformance_loaded: str
) -> None:
    contract = _contract()
    contract["patient"]["identifier"]["value"] = "19121212-1213"

    invalid = service.post("/contracts", json=contract)
    malformed = service.post(
        "/contracts", content=b'{"id": ', headers={"Content-Type": "application/json"}
    )

    assert invalid.status_code == 422
    assert invalid.headers["Content-Type"] == PROBLEM_JSON
    assert any("patient" in e["location"] for e in invalid.json()["errors"])
    assert any("check digit" in e["message"] for e in invalid.json()["errors"])
    assert malformed.status_code == 422
    assert _careplans(conformance_loaded, contract["id"]) == 0


def test_while_hapi_is_away_writes_get_503_with_retry_after_and_a_retry_succeeds_after(
    conformance_loaded: str, tmp_path: Path, issuer: TestIssuer
) -> None:
    hapi = urlsplit(conformance_loaded)
    with running_proxy((hapi.hostname or "127.0.0.1", hapi.port or 80)) as proxy:
        via_proxy = conformance_loaded.replace(f":{hapi.port}", f":{proxy.port}", 1)
        with _client(via_proxy, tmp_path, issuer) as service:
            _wait_until_ready(service)
            contract = _contract()
            key = {"Idempotency-Key": str(uuid.uuid4())}

            proxy.cut()
            during = service.post("/contracts", json=contract, headers=key)
            read_during = service.get(f"/contracts/{contract['id']}")
            proxy.restore()
            after = service.post("/contracts", json=contract, headers=key)

    assert during.status_code == 503
    assert during.headers["Content-Type"] == PROBLEM_JSON
    assert int(during.headers["Retry-After"]) > 0
    assert "nothing was written" in during.json()["detail"]
    assert str(proxy.port) not in during.text
    assert read_during.status_code == 503, read_during.text
    assert after.status_code == 201, after.text
    assert _careplans(conformance_loaded, contract["id"]) == 1


def test_a_write_hapi_never_answers_is_504_outcome_unknown_and_a_keyed_retry_finds_it_made(
    conformance_loaded: str, tmp_path: Path, issuer: TestIssuer
) -> None:
    hapi = urlsplit(conformance_loaded)
    keyed, unkeyed = _contract(), _contract()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    with running_proxy((hapi.hostname or "127.0.0.1", hapi.port or 80)) as proxy:
        via_proxy = conformance_loaded.replace(f":{hapi.port}", f":{proxy.port}", 1)
        with _client(via_proxy, tmp_path, issuer, hapi_timeout_seconds=3) as service:
            _wait_until_ready(service)

            # HAPI gets the writes and makes them; its answers are lost on the way back.
            proxy.swallowing = True
            lost = service.post("/contracts", json=keyed, headers=key)
            lost_without_key = service.post("/contracts", json=unkeyed)
            proxy.swallowing = False
            retried = service.post("/contracts", json=keyed, headers=key)
            again = service.post("/contracts", json=keyed, headers=key)

    for unknown in (lost, lost_without_key):
        assert unknown.status_code == 504, unknown.text
        assert "outcome of this write is unknown" in unknown.json()["detail"]
        assert "nothing was written" not in unknown.text
    assert _careplans(conformance_loaded, unkeyed["id"]) == 1
    assert retried.status_code == 201, retried.text
    assert retried.headers["Idempotency-Replayed"] == "true"
    assert retried.json()["id"] == keyed["id"]
    assert (again.status_code, again.json()) == (201, retried.json())
    assert _careplans(conformance_loaded, keyed["id"]) == 1
    provenances = httpx.get(
        f"{conformance_loaded}/Provenance",
        params={"target-identifier": f"{urls.ID_CONTRACT}|{keyed['id']}", "_summary": "count"},
    )
    assert provenances.json()["total"] == 1


def test_a_contract_larger_than_a_contract_may_be_is_refused_before_hapi_naming_each_list(
    service: TestClient, conformance_loaded: str
) -> None:
    contract = _contract()
    goal, time_ = contract["goals"][0], contract["agreed_times"][0]
    contract["goals"] = [{**goal, "key": f"g{i}"} for i in range(MAX_GOALS + 1)]
    contract["agreed_times"] = [{**time_, "key": f"t{i}"} for i in range(MAX_AGREED_TIMES + 1)]

    refused = service.post("/contracts", json=contract)

    assert refused.status_code == 422, refused.text
    locations = {e["location"] for e in refused.json()["errors"]}
    assert {"$.goals", "$.agreed_times"} <= locations
    assert _careplans(conformance_loaded, contract["id"]) == 0


def test_every_problem_of_a_contract_is_named_at_its_json_path_in_the_callers_terms(
    service: TestClient, conformance_loaded: str
) -> None:
    contract = _contract()
    contract["title"] = 7
    contract["patient"]["identifier"]["value"] = "191212121213"
    contract["goals"][0]["due"] = "soon"
    contract["goals"][0]["status"] = "dreaming"
    contract["activities"] = "walk"
    contract["relatives"] = [[]]
    contract["colour"] = "blue"

    refused = service.post("/contracts", json=contract)

    assert refused.status_code == 422, refused.text
    said = {e["location"]: e["message"] for e in refused.json()["errors"]}
    assert said["$.title"] == "must be a string"
    assert said["$.patient.identifier.value"].endswith("check digit is 3, expected 2")
    assert said["$.goals[0].due"] == "must be a date, YYYY-MM-DD"
    assert said["$.goals[0].status"].startswith("must be one of")
    assert said["$.activities"] == "must be a JSON array"
    assert said["$.relatives[0]"] == "must be a JSON object"
    assert said["$.colour"].startswith("is not a field here")
    for message in said.values():
        assert not PYTHON_WORDS.search(message), message
    assert _careplans(conformance_loaded, contract["id"]) == 0


def test_contracts_are_found_by_patient_and_status_a_page_at_a_time(service: TestClient) -> None:
    personnummer = unique_personnummer()
    ids = []
    for _ in range(3):
        contract = _contract()
        contract["patient"]["identifier"]["value"] = personnummer
        assert service.post("/contracts", json=contract).status_code == 201
        ids.append(contract["id"])

    seen: list[str] = []
    url: str | None = f"/contracts?patient=personnummer|{personnummer}&status=draft&count=2"
    pages = 0
    while url is not None:
        page = service.get(url)
        assert page.status_code == 200, page.text
        seen += [c["id"] for c in page.json()["contracts"]]
        url = page.json()["next"]
        pages += 1
    agreed_only = service.get(f"/contracts?patient=personnummer|{personnummer}&status=agreed")

    assert seen == ids
    assert pages == 2
    assert agreed_only.json() == {
        "contracts": [],
        "next": None,
        "withheld": False,
        "unreadable": [],
        "labels": {},
    }


def test_a_contract_made_unreadable_in_hapi_is_left_out_of_a_search_and_named_not_failed(
    service: TestClient, conformance_loaded: str, issuer: TestIssuer
) -> None:
    personnummer = unique_personnummer()
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    agreements = [{"party": p, "agreed_at": now} for p in ("patient", "responsible-clinician")]
    ids = []
    for _ in range(3):
        contract = _contract()
        contract["patient"]["identifier"]["value"] = personnummer
        etag = service.post("/contracts", json=contract).headers["ETag"]
        agreed = service.post(
            f"/contracts/{contract['id']}/agree",
            json={"agreements": agreements},
            headers={"If-Match": etag},
        )
        assert agreed.status_code == 200, agreed.text
        ids.append(contract["id"])
    broken = ids[1]
    careplan = httpx.get(
        f"{conformance_loaded}/CarePlan", params={"identifier": f"{urls.ID_CONTRACT}|{broken}"}
    ).json()["entry"][0]["resource"]
    # Another system retitles the agreed plan without revising it: it no longer reads.
    retitled = httpx.put(
        f"{conformance_loaded}/CarePlan/{careplan['id']}",
        json={**careplan, "title": "retitled by another system"},
    )
    assert retitled.status_code == 200, retitled.text

    def search(headers: dict[str, str]) -> tuple[list[str], list[str], bool]:
        shown, named, withheld = [], [], False
        url: str | None = f"/contracts?patient=personnummer|{personnummer}&count=2"
        while url is not None:
            page = service.get(url, headers=headers)
            assert page.status_code == 200, page.text
            shown += [c["id"] for c in page.json()["contracts"]]
            named += page.json()["unreadable"]
            withheld = withheld or page.json()["withheld"]
            url = page.json()["next"]
        return shown, named, withheld

    patient_token = issuer.headers("patient", patient=f"personnummer|{personnummer}")
    assert service.get(f"/contracts/{broken}").status_code == 502
    assert search({}) == ([ids[0], ids[2]], [broken], False)
    # The patient is not told which: it might have been one they may not see.
    assert search(patient_token) == ([ids[0], ids[2]], [], True)
    plan = service.get(f"/patients/personnummer|{personnummer}/plan", headers=patient_token)
    assert plan.status_code == 200, plan.text
    assert [c["id"] for c in plan.json()["contracts"]] == [ids[0], ids[2]]
    assert plan.json()["withheld"] is True


def test_a_search_names_its_page_s_codes_in_the_language_accept_language_prefers(
    service: TestClient,
) -> None:
    personnummer = unique_personnummer()
    contract = _contract()
    contract["patient"]["identifier"]["value"] = personnummer
    assert service.post("/contracts", json=contract).status_code == 201

    response = service.get(
        f"/contracts?patient=personnummer|{personnummer}",
        headers={"Accept-Language": "en;q=0.5, sv"},
    )
    norwegian = service.get(
        f"/contracts?patient=personnummer|{personnummer}",
        headers={"Accept-Language": "sv;q=0.5, nb"},
    )

    assert response.status_code == 200, response.text
    assert response.headers["Content-Language"] == "sv"
    assert "accept-language" in response.headers["Vary"].lower()
    labels = response.json()["labels"]
    assert labels["contract-status"] == {"draft": "Utkast"}
    assert labels["activity-owner"]["relative"] == "Närstående"
    assert labels["care-team-role"]["social-worker"] == "Kurator"
    assert labels["relationship"] == {"CHILD": "barn"}
    assert set(labels["activity-category"]) == {a["category"] for a in contract["activities"]}
    assert norwegian.headers["Content-Language"] == "nb"
    assert norwegian.json()["labels"]["care-team-role"]["social-worker"] == "Sosionom"
    # The contract itself is what a client puts back: the names stay beside it.
    assert "labels" not in response.json()["contracts"][0]
    assert "labels" not in service.get(f"/contracts/{contract['id']}").json()


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("patient=personnummer|19121212-1213", "check digit"),
        ("patient=hsa-id|SE2321000065-1254", "does not identify a patient"),
        ("status=pending", "unknown contract status"),
        ("periodFrom=2026-05-01&periodTo=2026-01-01", "empty range"),
        ("count=500", "count"),
        ("cursor=not-a-cursor", "cursor"),
    ],
)
def test_an_invalid_search_gets_a_problem_saying_why(
    service: TestClient, query: str, words: str
) -> None:
    response = service.get(f"/contracts?{query}")

    assert response.status_code == 422
    assert response.headers["Content-Type"] == PROBLEM_JSON
    assert words in response.text


async def test_twenty_concurrent_creates_through_the_service_store_one_careplan(
    conformance_loaded: str, tmp_path: Path, issuer: TestIssuer
) -> None:
    settings = {
        "HAPI_URL": conformance_loaded,
        "DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
        **issuer.env(),
    }
    racing, keyed = _contract(), _contract()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    with running_service(settings, tmp_path / "service.log") as base_url:
        headers = issuer.headers("ehr", organization=CARE_UNIT)
        async with httpx.AsyncClient(base_url=base_url, timeout=120, headers=headers) as client:
            without_key = await asyncio.gather(
                *(client.post("/contracts", json=racing) for _ in range(20))
            )
            with_key = await asyncio.gather(
                *(client.post("/contracts", json=keyed, headers=key) for _ in range(20))
            )
            replay = await client.post("/contracts", json=keyed, headers=key)

    assert sorted(r.status_code for r in without_key) == [201] + [409] * 19
    # One request with the key writes; the others get its answer or are told it is running,
    # never "exists" (which would mean a second write was tried).
    fresh = [r for r in with_key if "Idempotency-Replayed" not in r.headers]
    assert [r.status_code for r in fresh if r.status_code == 201] == [201]
    assert {r.json()["title"] for r in fresh if r.status_code == 409} <= {"Request in progress"}
    assert replay.status_code == 201
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert _careplans(conformance_loaded, racing["id"]) == 1
    assert _careplans(conformance_loaded, keyed["id"]) == 1


def test_a_patient_of_another_issuer_is_stored_under_that_issuers_system(
    service: TestClient, conformance_loaded: str
) -> None:
    contract = _contract()
    mrn = {"kind": "other", "system": "urn:oid:1.2.36.146.595.217.0.1", "value": uuid.uuid4().hex}
    contract["patient"]["identifier"] = mrn

    created = service.post("/contracts", json=contract)
    read = service.get(f"/contracts/{contract['id']}")
    searched = service.get("/contracts", params={"patient": f"other|{mrn['value']}"})

    assert created.status_code == 201, created.text
    assert read.json()["patient"]["identifier"] == mrn
    stored = httpx.get(
        f"{conformance_loaded}/Patient", params={"identifier": f"{mrn['system']}|{mrn['value']}"}
    )
    assert stored.json()["total"] == 1
    assert searched.status_code == 422, "searched by national identifiers only"
    assert not PYTHON_WORDS.search(searched.text)


def test_a_contract_naming_only_its_unit_is_that_units_and_found_by_it(
    service: TestClient, conformance_loaded: str
) -> None:
    contract = _contract()
    clinician = contract.pop("responsible_clinician")
    contract["responsible_unit"] = clinician["organization"]
    contract["patient"]["identifier"]["value"] = unique_personnummer()
    unit = clinician["organization"]["identifier"]

    created = service.post("/contracts", json=contract)
    read = service.get(f"/contracts/{contract['id']}")
    found = service.get(
        "/contracts",
        params={
            "careUnit": f"{unit['kind']}|{unit['value']}",
            "patient": f"personnummer|{contract['patient']['identifier']['value']}",
        },
    )

    assert created.status_code == 201, created.text
    assert read.json()["responsible_clinician"] is None
    assert read.json()["responsible_unit"] == clinician["organization"]
    assert contract["id"] in {c["id"] for c in found.json()["contracts"]}
    stored = httpx.get(
        f"{conformance_loaded}/CarePlan",
        params={"identifier": f"{urls.ID_CONTRACT}|{contract['id']}"},
    ).json()["entry"][0]["resource"]
    assert "author" not in stored
    [unit_extension] = [e for e in stored["extension"] if e["url"] == urls.EXT_RESPONSIBLE_UNIT]
    assert unit_extension["valueReference"]["reference"].startswith("Organization/")
    assert clinician["organization"]["name"] in stored["text"]["div"]
