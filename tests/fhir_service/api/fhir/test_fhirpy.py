"""The FHIR endpoint driven by ``fhirpy`` (sync and async), a client nobody here wrote.

The service runs as a process against the real HAPI; a care unit's EHR token reads, searches
with an include, pages to the end, updates the way ``save()`` does (no If-Match), creates, and
calls the coherent plan by POST, as fhirpy calls an operation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import AsyncFHIRClient, SyncFHIRClient

from fhir_service.contract import IdentifierKind
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_for
from tests.auth import TestIssuer
from tests.service_process import running_service
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"


@pytest.fixture(scope="module")
def base_url(
    conformance_loaded: str, tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("fhirpy")
    environment = {
        **issuer.env(),
        "HAPI_URL": conformance_loaded,
        "DATABASE_URL": f"sqlite:///{directory / 'service.db'}",
    }
    with running_service(environment, directory / "service.log") as url:
        yield url


@pytest.fixture(scope="module")
def contract(base_url: str, issuer: TestIssuer) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "stroke-rehabilitation.json").read_text("utf-8"))
    data["id"] = f"fhirpy-{uuid.uuid4().hex[:12]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    data["status"], data["agreements"] = "draft", []
    created = httpx.post(f"{base_url}/contracts", json=data, headers=_ehr(issuer, data))
    assert created.status_code == 201, created.text
    return data


def _ehr(issuer: TestIssuer, contract: dict[str, Any]) -> dict[str, str]:
    unit = contract["responsible_clinician"]["organization"]["identifier"]
    return issuer.headers("ehr", organization=f"{unit['kind']}|{unit['value']}")


def _client(base_url: str, issuer: TestIssuer, contract: dict[str, Any]) -> SyncFHIRClient:
    bearer = _ehr(issuer, contract)["Authorization"]
    return SyncFHIRClient(f"{base_url}/fhir", authorization=bearer)


def test_fhirpy_reads_searches_with_an_include_and_pages_to_the_end(
    base_url: str, issuer: TestIssuer, contract: dict[str, Any]
) -> None:
    client = _client(base_url, issuer, contract)
    token = f"{urls.ID_CONTRACT}|{contract['id']}"

    bundle = client.resources("CarePlan").search(identifier=token).include("CarePlan", "goal")
    found = bundle.fetch_raw()
    [plan] = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
    read = client.reference("CarePlan", plan["id"]).to_resource()
    goals = client.resources("Goal").search(patient=plan["subject"]["reference"]).limit(1)

    assert read["title"] == contract["title"]
    # count() asks for no entries and reads total: a unit's CarePlans are counted for it.
    assert client.resources("CarePlan").search(identifier=token).count() == 1
    included = {e["resource"]["resourceType"] for e in found["entry"]}
    assert included == {"CarePlan", "Goal"}
    # One Goal a page: fetch_all follows every next link to the end.
    assert len(goals.fetch_all()) == len(contract["goals"])


def test_fhirpy_saves_a_goal_without_if_match_and_creates_one(
    base_url: str, issuer: TestIssuer, contract: dict[str, Any]
) -> None:
    client = _client(base_url, issuer, contract)
    key = contract["goals"][0]["key"]
    goal = client.resources("Goal").search(identifier=f"{urls.ID_GOAL}|{contract['id']}/{key}")
    found = goal.first()
    assert found is not None

    found["description"] = {"text": "Gå till affären själv"}
    found.save()
    new = client.resource(
        "Goal",
        identifier=[{"system": urls.ID_GOAL, "value": f"{contract['id']}/fhirpy"}],
        lifecycleStatus="proposed",
        description={"text": "Laga mat en gång i veckan"},
        subject=found["subject"],
    )
    new.save()

    assert new["id"], "the create's id came back"
    read = httpx.get(
        f"{base_url}/contracts/{contract['id']}", headers=_ehr(issuer, contract)
    ).json()
    goals = {g["key"]: g["description"] for g in read["goals"]}
    assert goals[key] == "Gå till affären själv"
    assert goals["fhirpy"] == "Laga mat en gång i veckan"


def test_fhirpy_calls_the_coherent_plan_by_post(
    base_url: str, issuer: TestIssuer, contract: dict[str, Any]
) -> None:
    personnummer = contract["patient"]["identifier"]["value"]
    agreed: dict[str, Any] = json.loads(
        (EXAMPLES / "stroke-rehabilitation.json").read_text("utf-8")
    )
    agreed["id"] = f"fhirpy-agreed-{uuid.uuid4().hex[:8]}"
    agreed["patient"]["identifier"]["value"] = personnummer
    stored = httpx.post(f"{base_url}/contracts", json=agreed, headers=_ehr(issuer, agreed))
    assert stored.status_code == 201, stored.text
    patient = issuer.headers("patient", patient=f"personnummer|{personnummer}")
    client = SyncFHIRClient(f"{base_url}/fhir", authorization=patient["Authorization"])
    system = system_for(IdentifierKind.PERSONNUMMER)

    plan = client.execute(
        "CarePlan/$coherent-plan",
        method="post",
        data={
            "resourceType": "Parameters",
            "parameter": [{"name": "patient", "valueString": f"{system}|{personnummer}"}],
        },
    )

    # The agreed contract, not the draft, which is the unit's alone.
    careplans = [
        e["resource"] for e in plan["entry"] if e["resource"]["resourceType"] == "CarePlan"
    ]
    assert [c["title"] for c in careplans] == [agreed["title"]]


async def test_async_fhirpy_reads_and_searches_the_same(
    base_url: str, issuer: TestIssuer, contract: dict[str, Any]
) -> None:
    bearer = _ehr(issuer, contract)["Authorization"]
    client = AsyncFHIRClient(f"{base_url}/fhir", authorization=bearer)
    token = f"{urls.ID_CONTRACT}|{contract['id']}"

    plan = await client.resources("CarePlan").search(identifier=token).first()
    assert plan is not None
    read = await client.reference("CarePlan", plan["id"]).to_resource()

    assert read["title"] == contract["title"]
    assert read["id"] == plan["id"]
