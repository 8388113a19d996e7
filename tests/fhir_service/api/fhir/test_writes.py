"""PUT and POST of one contract record on /fhir against the real HAPI: the record changes its
contract, and every refused write leaves the contract as it was.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_service.contract import Contract
from fhir_service.logs import current_request_id
from fhir_service.mapping import urls
from fhir_service.store import Change, ContractStore
from tests.auth import TestIssuer
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
UNIT = "hsa-id|SE2321000065-1254"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def ehr(issuer: TestIssuer) -> dict[str, str]:
    return {**issuer.headers("ehr", organization=UNIT), **FHIR_JSON}


@pytest.fixture
def draft(service: TestClient, ehr: dict[str, str]) -> Contract:
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"wr-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    contract = Contract.model_validate(data)
    created = service.post("/contracts", content=contract.model_dump_json(), headers=ehr)
    assert created.status_code == 201, created.text
    return contract


def _record(service: TestClient, headers: dict[str, str], kind: str, value: str) -> Any:
    system = {"Goal": urls.ID_GOAL, "Appointment": urls.ID_AGREED_TIME}.get(
        kind, urls.ID_CARE_TEAM if kind == "CareTeam" else urls.ID_CONTRACT
    )
    found = service.get(
        f"/fhir/{kind}", params={"identifier": f"{system}|{value}"}, headers=headers
    )
    assert found.status_code == 200, found.text
    entries = found.json().get("entry", [])
    assert len(entries) == 1, found.text
    return entries[0]["resource"]


def _put(service: TestClient, headers: dict[str, str], resource: Any, version: Any) -> Any:
    kind, rid = resource["resourceType"], resource["id"]
    etag = {} if version is None else {"If-Match": f'W/"{version}"'}
    return service.put(
        f"/fhir/{kind}/{rid}", content=json.dumps(resource), headers={**headers, **etag}
    )


def _contract(service: TestClient, headers: dict[str, str], contract_id: str) -> Any:
    read = service.get(f"/contracts/{contract_id}", headers=headers)
    assert read.status_code == 200, read.text
    return read.json()


def test_an_ehr_changes_and_adds_records_of_a_draft_one_by_one(
    service: TestClient, ehr: dict[str, str], draft: Contract
) -> None:
    goal = _record(service, ehr, "Goal", f"{draft.id}/sleep")
    goal["description"] = {"text": "Sova sex timmar i sträck"}
    changed = _put(service, ehr, goal, goal["meta"]["versionId"])

    new_goal = {
        "resourceType": "Goal",
        "identifier": [{"system": urls.ID_GOAL, "value": f"{draft.id}/walks"}],
        "lifecycleStatus": "proposed",
        "description": {"text": "Promenera varje dag"},
        "subject": goal["subject"],
    }
    added = service.post("/fhir/Goal", content=json.dumps(new_goal), headers=ehr)

    careplan = _record(service, ehr, "CarePlan", draft.id)
    careplan["title"] = "Retitled through FHIR"
    # As fhirpy's save() and HAPI's update() send it: no If-Match, the current version changes.
    retitled = _put(service, ehr, careplan, None)

    assert changed.status_code == 200, changed.text
    assert changed.json()["description"]["text"] == "Sova sex timmar i sträck"
    written = int(goal["meta"]["versionId"]) + 1
    assert changed.headers["etag"] == f'W/"{written}"'
    where = f"http://testserver/fhir/Goal/{goal['id']}/_history/{written}"
    assert changed.headers["content-location"] == changed.headers["location"] == where
    assert added.status_code == 201, added.text
    assert added.headers["location"].startswith("http://testserver/fhir/Goal/")
    assert added.json()["description"]["text"] == "Promenera varje dag"
    assert retitled.status_code == 200, retitled.text
    stored = _contract(service, ehr, draft.id)
    assert stored["version"] == 4
    assert stored["title"] == "Retitled through FHIR"
    goals = {g["key"]: g["description"] for g in stored["goals"]}
    assert goals["sleep"] == "Sova sex timmar i sträck"
    assert goals["walks"] == "Promenera varje dag"


def test_an_agreed_time_and_a_care_contact_are_added(
    service: TestClient, ehr: dict[str, str], draft: Contract
) -> None:
    stored = _record(service, ehr, "Appointment", f"{draft.id}/sodium-visit")
    time = {k: v for k, v in stored.items() if k not in ("id", "meta", "text")}
    time["identifier"] = [{"system": urls.ID_AGREED_TIME, "value": f"{draft.id}/follow-up"}]
    time["description"] = "Uppföljning"
    time["status"] = "proposed"
    time.pop("start", None)
    time.pop("end", None)
    time["participant"] = [{**p, "status": "needs-action"} for p in time["participant"]]
    added_time = service.post("/fhir/Appointment", content=json.dumps(time), headers=ehr)

    team = _record(service, ehr, "CareTeam", f"{draft.id}/care-contact/0")
    contact = {k: v for k, v in team.items() if k not in ("id", "meta", "text")}
    wrong = {
        **contact,
        "identifier": [{"system": urls.ID_CARE_TEAM, "value": f"{draft.id}/care-contact/5"}],
    }
    contact["identifier"] = [{"system": urls.ID_CARE_TEAM, "value": f"{draft.id}/care-contact/1"}]
    skipped = service.post("/fhir/CareTeam", content=json.dumps(wrong), headers=ehr)
    added_contact = service.post("/fhir/CareTeam", content=json.dumps(contact), headers=ehr)

    assert added_time.status_code == 201, added_time.text
    assert skipped.status_code == 422
    assert "care-contact/1" in skipped.json()["issue"][0]["diagnostics"]
    assert added_contact.status_code == 201, added_contact.text
    contract = _contract(service, ehr, draft.id)
    assert "follow-up" in {t["key"] for t in contract["agreed_times"]}
    assert len(contract["care_contacts"]) == 2


def test_refused_record_writes_leave_the_contract_as_it_was(
    service: TestClient, ehr: dict[str, str], draft: Contract
) -> None:
    goal = _record(service, ehr, "Goal", f"{draft.id}/sleep")
    version = goal["meta"]["versionId"]
    edited = {**goal, "description": {"text": "Lost edit"}}
    renamed = {
        **edited,
        "identifier": [{"system": urls.ID_GOAL, "value": f"{draft.id}/other-key"}],
    }
    foreign = {**edited, "subject": {"reference": "Patient/someone-else"}}
    bad_status = {**edited, "lifecycleStatus": "on-hold"}
    duplicate = {k: v for k, v in edited.items() if k not in ("id", "meta")}

    answers = {
        "stale": _put(service, ehr, edited, int(version) + 3),
        "wrong id": service.put(
            f"/fhir/Goal/{goal['id']}0",
            content=json.dumps(edited),
            headers={**ehr, "If-Match": 'W/"1"'},
        ),
        "renamed": _put(service, ehr, renamed, version),
        "foreign patient": _put(service, ehr, foreign, version),
        "unmapped status": _put(service, ehr, bad_status, version),
        "wrong type": service.put(
            f"/fhir/Goal/{goal['id']}",
            content=json.dumps({**edited, "resourceType": "Observation"}),
            headers={**ehr, "If-Match": f'W/"{version}"'},
        ),
        "not json": service.put(
            f"/fhir/Goal/{goal['id']}",
            content="{",
            headers={**ehr, "If-Match": f'W/"{version}"'},
        ),
        "duplicate key": service.post("/fhir/Goal", content=json.dumps(duplicate), headers=ehr),
        "careplan create": service.post(
            "/fhir/CarePlan",
            content=json.dumps(_record(service, ehr, "CarePlan", draft.id)),
            headers=ehr,
        ),
        "delete": service.delete(f"/fhir/Goal/{goal['id']}", headers=ehr),
        "patch": service.patch(f"/fhir/Goal/{goal['id']}", content="[]", headers=ehr),
    }

    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "stale": 412,
        "wrong id": 400,
        "renamed": 422,
        "foreign patient": 422,
        "unmapped status": 422,
        "wrong type": 400,
        "not json": 400,
        "duplicate key": 409,
        "careplan create": 405,
        "delete": 405,
        "patch": 405,
    }
    for name, answer in answers.items():
        assert answer.json()["resourceType"] == "OperationOutcome", name
    # What is not offered says what to use instead.
    said_to = {name: answers[name].json()["issue"][0]["diagnostics"] for name in statuses}
    assert said_to["careplan create"].endswith("transaction Bundle of its records: POST /fhir")
    assert "are not deleted: leave a record out" in said_to["delete"]
    assert said_to["patch"].endswith("send the whole record with PUT")
    # A stale version is answered with the current one, as an If-Match would name it.
    said = answers["stale"].json()["issue"][0]["diagnostics"]
    assert f'is at version {version} (If-Match: W/"{version}")' in said
    contract = _contract(service, ehr, draft.id)
    assert contract["version"] == 1
    assert {g["key"]: g["description"] for g in contract["goals"]}["sleep"] == (
        "Kunna sova hela nätter igen"
    )


def test_a_patient_and_another_unit_cannot_write_a_contracts_records(
    service: TestClient, issuer: TestIssuer, ehr: dict[str, str], draft: Contract
) -> None:
    time = _record(service, ehr, "Appointment", f"{draft.id}/sodium-visit")
    version = time["meta"]["versionId"]
    moved = {**time, "description": "Moved by someone else"}
    patient = {
        **issuer.headers("patient", patient=f"personnummer|{draft.patient.identifier.value}"),
        **FHIR_JSON,
    }
    stranger = {**issuer.headers("ehr", organization="hsa-id|SE2321000065-9999"), **FHIR_JSON}

    by_patient = _put(service, patient, moved, version)
    by_stranger = _put(service, stranger, moved, version)

    assert by_patient.status_code == 403
    assert by_stranger.status_code == 404
    assert _contract(service, ehr, draft.id)["version"] == 1


def test_a_record_of_an_agreed_contract_is_not_changed_without_a_revision(
    service: TestClient, ehr: dict[str, str], draft: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    agreed_at = "2026-11-01T10:00:00+01:00"
    agreements = {
        "agreements": [
            {"party": party, "agreed_at": agreed_at}
            for party in ("patient", "responsible-clinician")
        ]
    }
    agreeing = service.post(
        f"/contracts/{draft.id}/agree", json=agreements, headers={**ehr, "If-Match": 'W/"1"'}
    )
    assert agreeing.status_code == 200, agreeing.text
    goal = _record(service, ehr, "Goal", f"{draft.id}/sleep")
    careplan = _record(service, ehr, "CarePlan", draft.id)
    searches = _count_contract_searches(monkeypatch)

    changed = _put(
        service, ehr, {**goal, "description": {"text": "Not now"}}, goal["meta"]["versionId"]
    )
    reopened = _put(
        service,
        ehr,
        _with_status(careplan, "revised"),
        careplan["meta"]["versionId"],
    )

    assert changed.status_code == 409
    assert reopened.status_code == 200, reopened.text
    # Each write read its contract once: the step took the contract the write had read.
    assert searches == [draft.id, draft.id]
    assert _contract(service, ehr, draft.id)["status"] == "revised"


def _count_contract_searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the contracts the store searches for while answering a request from now on
    (not in the background, where the change feed reads contracts too)."""
    searched: list[str] = []
    search_one = ContractStore._search_one

    async def counted(
        store: ContractStore, contract_id: str, by: Change | None, **options: Any
    ) -> Any:
        if current_request_id() is not None:
            searched.append(contract_id)
        return await search_one(store, contract_id, by, **options)

    monkeypatch.setattr(ContractStore, "_search_one", counted)
    return searched


def _with_status(careplan: dict[str, Any], status: str) -> dict[str, Any]:
    extensions = [
        {**e, "valueCoding": {**e["valueCoding"], "code": status}}
        if e["url"] == urls.EXT_CONTRACT_STATUS
        else e
        for e in careplan["extension"]
    ]
    return {**careplan, "extension": extensions}


def test_a_write_answers_as_prefer_return_asks(
    service: TestClient, ehr: dict[str, str], draft: Contract
) -> None:
    goal = _record(service, ehr, "Goal", f"{draft.id}/sleep")
    minimal = service.put(
        f"/fhir/Goal/{goal['id']}",
        content=json.dumps({**goal, "description": {"text": "Sova gott"}}),
        headers={**ehr, "Prefer": "return=minimal"},
    )
    told = service.put(
        f"/fhir/Goal/{goal['id']}",
        content=json.dumps({**goal, "description": {"text": "Sova gott, och länge"}}),
        headers={**ehr, "Prefer": "return=OperationOutcome"},
    )

    assert (minimal.status_code, minimal.content) == (200, b"")
    written = int(goal["meta"]["versionId"]) + 1
    assert minimal.headers["location"].endswith(f"/fhir/Goal/{goal['id']}/_history/{written}")
    assert minimal.headers["etag"] == f'W/"{written}"'
    assert told.status_code == 200
    assert told.json()["resourceType"] == "OperationOutcome"
    stored = {g["key"]: g["description"] for g in _contract(service, ehr, draft.id)["goals"]}
    assert stored["sleep"] == "Sova gott, och länge"


def test_a_conditional_create_answers_the_record_it_finds(
    service: TestClient, ehr: dict[str, str], draft: Contract
) -> None:
    goal = _record(service, ehr, "Goal", f"{draft.id}/sleep")
    again = {k: v for k, v in goal.items() if k not in ("id", "meta")}
    condition = f"identifier={urls.ID_GOAL}|{draft.id}/sleep"
    new = {
        **again,
        "identifier": [{"system": urls.ID_GOAL, "value": f"{draft.id}/swim"}],
        "description": {"text": "Simma en gång i veckan"},
    }

    found = service.post(
        "/fhir/Goal", content=json.dumps(again), headers={**ehr, "If-None-Exist": condition}
    )
    created = service.post(
        "/fhir/Goal",
        content=json.dumps(new),
        headers={**ehr, "If-None-Exist": f"identifier={urls.ID_GOAL}|{draft.id}/swim"},
    )

    # As HAPI answers it: the match with 200, not a conflict; no match, a create.
    assert found.status_code == 200, found.text
    assert found.json()["id"] == goal["id"]
    assert created.status_code == 201, created.text
    assert "swim" in {g["key"] for g in _contract(service, ehr, draft.id)["goals"]}
