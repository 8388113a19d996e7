"""The FHIR endpoint driven by ``fhirpy`` (sync and async), a client nobody here wrote.

The service runs as a process against the real HAPI; a care unit's EHR token reads, vreads and
follows a history, searches with an include and with ``_elements``/``_summary``, pages to the
end, counts, updates the way ``save()`` does (no If-Match), creates, creates conditionally the
way ``get_or_create()`` does (the condition in the query), sends a contract as a transaction,
and calls the operations by GET and by POST, as fhirpy calls them.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import AsyncFHIRClient, SyncFHIRClient

from fhir_service.contract import Contract, IdentifierKind
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.mapping.to_fhir import contract_to_bundle
from tests.auth import TestIssuer
from tests.booking import UNIT as BOOKING_UNIT
from tests.booking import far_hours, publish
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"


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


def test_fhirpy_reads_versions_and_history_cuts_and_creates_conditionally(
    base_url: str, issuer: TestIssuer, contract: dict[str, Any]
) -> None:
    client = _client(base_url, issuer, contract)
    token = f"{urls.ID_CONTRACT}|{contract['id']}"
    plan = client.resources("CarePlan").search(identifier=token).first()
    assert plan is not None
    key = f"{contract['id']}/fhirpy-conditional"
    goal = {
        "resourceType": "Goal",
        "identifier": [{"system": urls.ID_GOAL, "value": key}],
        "lifecycleStatus": "proposed",
        "description": {"text": "Gå på bowling med vännerna"},
        "subject": plan["subject"],
    }

    version = plan["meta"]["versionId"]
    vread = client.execute(f"CarePlan/{plan['id']}/_history/{version}", method="get")
    history = client.execute(f"CarePlan/{plan['id']}/_history", method="get")
    cut = client.resources("CarePlan").search(identifier=token).elements("title").fetch_raw()
    summary = client.resources("CarePlan").search(identifier=token, _summary="true").fetch_raw()
    asked = client.resources("Goal").search(identifier=f"{urls.ID_GOAL}|{key}")
    first, created = asked.get_or_create(client.resource("Goal", **goal))
    again, created_again = asked.get_or_create(client.resource("Goal", **goal))

    assert (vread["id"], vread["meta"]["versionId"]) == (plan["id"], version)
    assert history["type"] == "history"
    assert history["entry"][0]["resource"]["meta"]["versionId"] == version
    [titled] = [e["resource"] for e in cut["entry"]]
    # What was asked for, and what R4 makes mandatory, nothing else.
    assert set(titled) - {"resourceType", "id", "meta"} == {"title", "status", "intent", "subject"}
    assert "SUBSETTED" in {t["code"] for t in titled["meta"]["tag"]}
    [summarized] = [e["resource"] for e in summary["entry"]]
    assert "activity" not in summarized
    # fhirpy's conditional create puts the condition in the query, as Aidbox takes it.
    assert (created, created_again) == (True, False)
    assert first["id"] == again["id"]


def test_fhirpy_sends_a_contract_as_a_transaction_and_finds_times_both_ways(
    base_url: str, issuer: TestIssuer, contract: dict[str, Any]
) -> None:
    client = _client(base_url, issuer, contract)
    draft: dict[str, Any] = json.loads((EXAMPLES / "stroke-rehabilitation.json").read_text("utf-8"))
    draft["id"] = f"fhirpy-tx-{uuid.uuid4().hex[:8]}"
    draft["patient"]["identifier"]["value"] = unique_personnummer()
    draft["status"], draft["agreements"] = "draft", []
    bundle = contract_to_bundle(Contract.model_validate(draft), new=True)
    start = next(far_hours())
    with httpx.Client(base_url=base_url) as http:
        [slot] = publish(http, issuer.headers("ehr", organization=BOOKING_UNIT), [start])
    find = {
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=1)).isoformat(),
        # A unit that publishes nurse visits (mappings/booking/time-types.json).
        "organization": f"{system_for(IdentifierKind.HSA_ID)}|{BOOKING_UNIT.split('|')[1]}",
        "visit-type": f"{urls.CS_TIME_TYPE}|nurse-visit",
    }
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": n, "valueString": v} for n, v in find.items()],
    }

    answer = client.execute(f"{base_url}/fhir", method="post", data=bundle)
    by_get = client.execute("Appointment/$find", method="get", params=find)
    by_post = client.execute("Appointment/$find", method="post", data=parameters)

    assert answer["type"] == "transaction-response"
    statuses = {e["response"]["status"] for e in answer["entry"]}
    assert "201 Created" in statuses
    assert all(e["response"].get("location") for e in answer["entry"])
    assert by_get["type"] == by_post["type"] == "searchset"
    assert by_get["entry"] == by_post["entry"]
    [proposed] = [e["resource"] for e in by_get["entry"]]
    assert proposed["slot"] == [{"reference": f"{base_url}/fhir/Slot/{slot}"}]
