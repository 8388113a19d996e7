"""POST /fhir against the real HAPI: a contract's whole life as transaction Bundles, and every
malformed Bundle refused with an OperationOutcome and nothing written.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_service.contract import Agreement, AgreementParty, Contract, ContractStatus
from fhir_service.mapping.to_fhir import contract_to_bundle
from tests.auth import TestIssuer
from tests.support import (
    PYTHON_WORDS,
    bundle_names,
    careplan_response,
    contract_written,
    load_data,
    losses,
    missing,
    named,
    read_back,
    unique_hsa_id,
    unique_personnummer,
)

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
UNIT = "hsa-id|SE2321000065-1254"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def ehr(issuer: TestIssuer) -> dict[str, str]:
    return {**issuer.headers("ehr", organization=UNIT), **FHIR_JSON}


def _draft() -> Contract:
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"tx-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    return Contract.model_validate(data)


def _bundle(contract: Contract, version: int | None = None) -> dict[str, Any]:
    bundle = contract_to_bundle(contract, new=version is None)
    if version is not None:
        careplan = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan")
        careplan["request"]["ifMatch"] = f'W/"{version}"'
    return bundle


def _post(service: TestClient, headers: dict[str, str], body: Any) -> Any:
    return service.post("/fhir", content=json.dumps(body), headers=headers)


def test_an_ehr_runs_a_contracts_whole_life_through_fhir_transactions(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    now = datetime.now(UTC).replace(microsecond=0)
    agreements = tuple(Agreement(party=p, agreed_at=now) for p in AgreementParty)

    created = _post(service, ehr, _bundle(draft))
    edited = draft.model_copy(update={"title": "Edited through FHIR"})
    updated = _post(service, ehr, _bundle(edited, 1))
    agreed = edited.model_copy(update={"status": ContractStatus.AGREED, "agreements": agreements})
    agreeing = _post(service, ehr, _bundle(agreed, 2))
    ended = edited.model_copy(update={"status": ContractStatus.ENDED})
    ending = _post(service, ehr, _bundle(ended, 3))
    read = service.get(f"/contracts/{draft.id}", headers=ehr)

    assert created.status_code == 200, created.text
    assert created.json()["type"] == "transaction-response"
    assert len(created.json()["entry"]) == len(_bundle(draft)["entry"])
    assert updated.status_code == 200, updated.text
    assert agreeing.status_code == 200, agreeing.text
    assert ending.status_code == 200, ending.text
    assert careplan_response(ending)["etag"] == 'W/"4"'
    assert read.json()["title"] == "Edited through FHIR"
    assert read.json()["status"] == "ended"


def test_a_stale_or_missing_version_changes_nothing(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    assert _post(service, ehr, _bundle(draft)).status_code == 200
    edited = draft.model_copy(update={"title": "Lost edit"})

    stale = _post(service, ehr, _bundle(edited, 7))
    missing = _post(service, ehr, contract_to_bundle(edited))

    assert stale.status_code == 409
    assert missing.status_code == 428
    assert missing.json()["issue"][0]["diagnostics"].endswith('the contract is at W/"1"')
    assert service.get(f"/contracts/{draft.id}", headers=ehr).json()["title"] == draft.title


def test_contents_and_status_do_not_change_in_one_transaction(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    assert _post(service, ehr, _bundle(draft)).status_code == 200
    both = draft.model_copy(update={"title": "New", "status": ContractStatus.REVOKED})

    response = _post(service, ehr, _bundle(both, 1))

    assert response.status_code == 409
    assert "contents" in response.json()["issue"][0]["diagnostics"]


def _resource(bundle: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def _careplan_of(bundle: dict[str, Any]) -> dict[str, Any]:
    return _resource(bundle, "CarePlan")


def _without_contract_status(bundle: dict[str, Any]) -> dict[str, Any]:
    _careplan_of(bundle)["extension"] = []
    return bundle


def _with_foreign_goal(bundle: dict[str, Any]) -> dict[str, Any]:
    stranger = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    other = json.loads(json.dumps(stranger))
    other["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
    other["resource"]["identifier"][0]["value"] = unique_personnummer()
    other["request"] = {"method": "POST", "url": "Patient"}
    bundle["entry"].append(other)
    _resource(bundle, "Goal")["subject"] = {"reference": other["fullUrl"]}
    return bundle


def _with_subscription(bundle: dict[str, Any]) -> dict[str, Any]:
    # Not a clinical record a care plan refers to: a contract does not carry it.
    subscription = {"resourceType": "Subscription", "status": "requested", "reason": "x"}
    bundle["entry"].append(
        {"resource": subscription, "request": {"method": "POST", "url": "Subscription"}}
    )
    return bundle


def _with_bad_personnummer(bundle: dict[str, Any]) -> dict[str, Any]:
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    patient["identifier"][0]["value"] = "191212121213"
    return bundle


@pytest.mark.parametrize(
    ("spoil", "status", "words"),
    [
        (_without_contract_status, 422, "contractStatus"),
        (_with_foreign_goal, 422, "patient other than the CarePlan's"),
        (_with_subscription, 422, "Subscription"),
        (_with_bad_personnummer, 422, "personnummer"),
        (lambda b: {**b, "type": "batch"}, 422, "transaction Bundle"),
        (lambda b: b["entry"][0]["resource"], 422, "transaction Bundle"),
        (lambda b: [b], 400, "JSON object"),
    ],
    ids=["profile", "other-patient", "other-type", "check-digit", "batch", "not-a-bundle", "array"],
)
def test_malformed_bundles_are_refused_and_nothing_is_written(
    service: TestClient, ehr: dict[str, str], spoil: Any, status: int, words: str
) -> None:
    draft = _draft()

    response = _post(service, ehr, spoil(_bundle(draft)))

    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert words in response.text
    assert service.get(f"/contracts/{draft.id}", headers=ehr).status_code == 404


def test_deep_nesting_huge_narratives_and_xml_are_refused(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    huge = _bundle(draft)
    _careplan_of(huge)["text"]["div"] = (
        '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * 2_000_000 + "</div>"
    )

    nested = service.post("/fhir", content="[" * 10_000 + "]" * 10_000, headers=ehr)
    extended = _bundle(draft)
    deep: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(100):
        deep = {"url": "http://example.org/x", "extension": [deep]}
    _careplan_of(extended).setdefault("extension", []).append(deep)
    deeply_extended = _post(service, ehr, extended)
    too_big = _post(service, ehr, huge)
    xml = service.post(
        "/fhir",
        content="<Bundle xmlns='http://hl7.org/fhir'/>",
        headers={**ehr, "Content-Type": "application/fhir+xml"},
    )

    assert nested.status_code == 400
    assert deeply_extended.status_code == 400
    assert too_big.status_code == 413
    assert too_big.json()["resourceType"] == "OperationOutcome"
    assert xml.status_code == 415
    assert "application/fhir+json" in xml.json()["issue"][0]["diagnostics"]
    assert service.get(f"/contracts/{draft.id}", headers=ehr).status_code == 404


def test_a_bundle_larger_than_a_contract_may_be_is_refused_before_hapi_validates_it(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    bundle = _bundle(draft)
    goal_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal")
    careplan = _careplan_of(bundle)
    # Thousands of small goals: inside the body limit, far beyond what a contract holds.
    for index in range(2000):
        url = f"urn:uuid:{index:08d}-0000-4000-8000-000000000000"
        resource = {
            "resourceType": "Goal",
            "lifecycleStatus": "proposed",
            "description": {"text": "g"},
            "subject": goal_entry["resource"]["subject"],
        }
        request = {"method": "POST", "url": "Goal"}
        bundle["entry"].append({"fullUrl": url, "resource": resource, "request": request})
        careplan.setdefault("goal", []).append({"reference": url})
    assert len(json.dumps(bundle)) < 1_000_000

    started = time.monotonic()
    refused = _post(service, ehr, bundle)
    took = time.monotonic() - started

    assert refused.status_code == 422, refused.text[:500]
    issues = refused.json()["issue"]
    assert [(i["code"], i["expression"]) for i in issues] == [
        ("too-costly", ["Bundle.entry.resource.ofType(Goal)"])
    ]
    assert "at most 100" in issues[0]["diagnostics"]
    assert took < 30, "refused before HAPI's $validate, not after it"
    assert service.get(f"/contracts/{draft.id}", headers=ehr).status_code == 404


def test_a_patient_cannot_write_and_a_unit_cannot_write_another_units_contract(
    service: TestClient, issuer: TestIssuer
) -> None:
    draft = _draft()
    patient = {
        **issuer.headers("patient", patient=f"personnummer|{draft.patient.identifier.value}"),
        **FHIR_JSON,
    }
    stranger = {**issuer.headers("ehr", organization="hsa-id|SE2321000065-9999"), **FHIR_JSON}

    by_patient = _post(service, patient, _bundle(draft))
    by_stranger = _post(service, stranger, _bundle(draft))

    assert by_patient.status_code == 403
    assert by_stranger.status_code == 403
    assert by_patient.json()["resourceType"] == "OperationOutcome"


def _with_several_problems(bundle: dict[str, Any]) -> dict[str, Any]:
    """A Bundle wrong in five places at once: its profile, its intent, a check digit, a goal,
    a code."""
    careplan = _careplan_of(bundle)
    careplan["extension"] = []
    careplan["intent"] = "option"
    careplan["activity"][0]["detail"]["code"]["coding"][0]["code"] = "juggling"
    del _resource(bundle, "Goal")["description"]["text"]
    return _with_bad_personnummer(bundle)


def _index(bundle: dict[str, Any], kind: str) -> int:
    return next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == kind)


def test_a_bundle_with_several_problems_is_refused_once_naming_each_at_its_element(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    bundle = _with_several_problems(_bundle(draft))
    plan = f"Bundle.entry[{_index(bundle, 'CarePlan')}].resource"

    refused = _post(service, ehr, bundle)
    checked = service.post("/fhir/Bundle/$validate", content=json.dumps(bundle), headers=ehr)

    assert refused.status_code == 422, refused.text
    issues = refused.json()["issue"]
    assert all(i["severity"] == "error" and len(i["expression"]) == 1 for i in issues)
    said = {i["expression"][0]: i["diagnostics"] for i in issues}
    patient = f"Bundle.entry[{_index(bundle, 'Patient')}].resource"
    goal = f"Bundle.entry[{_index(bundle, 'Goal')}].resource"
    assert said[f"{patient}.identifier[0].value"].endswith("check digit is 3, expected 2")
    assert said[f"{goal}.description.text"] == "is required"
    assert said[f"{plan}.activity[0].detail.code"] == "unknown activity-category code 'juggling'"
    assert said[f"{plan}.intent"].startswith(
        "is option: a contract is a CarePlan of intent plan or order"
    )
    # HAPI's $validate finds the missing extension against our profile, in its own words.
    assert any("contractStatus" in i["diagnostics"] for i in issues), issues
    # Bundle/$validate answers exactly as POST /fhir does, and neither wrote anything.
    assert (checked.status_code, checked.json()) == (422, refused.json())
    assert service.get(f"/contracts/{draft.id}", headers=ehr).status_code == 404


def test_bundle_validate_takes_a_good_bundle_without_writing_it(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    bundle = _bundle(draft)
    as_parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": bundle}],
    }

    direct = service.post("/fhir/Bundle/$validate", content=json.dumps(bundle), headers=ehr)
    wrapped = service.post("/fhir/Bundle/$validate", content=json.dumps(as_parameters), headers=ehr)

    assert direct.status_code == 200, direct.text
    assert [i["severity"] for i in direct.json()["issue"]] == ["information"]
    assert draft.id in direct.json()["issue"][0]["diagnostics"]
    assert wrapped.json() == direct.json()
    assert service.get(f"/contracts/{draft.id}", headers=ehr).status_code == 404
    written = _post(service, ehr, bundle)
    assert written.status_code == 200, written.text


def test_the_capability_statement_offers_bundle_validate(service: TestClient) -> None:
    statement = service.get("/fhir/metadata").json()

    bundle = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Bundle")
    assert [o["name"] for o in bundle["operation"]] == ["validate"]


def _broken_bundles(draft: Contract) -> list[Any]:
    """Bundles broken the ways an integrator's first tries are: shapes, types, references."""

    def spoiled(change: Any) -> Any:
        bundle = _bundle(draft)
        change(bundle)
        return bundle

    return [
        spoiled(lambda b: _careplan_of(b).update(subject="Patient/1")),
        spoiled(lambda b: _careplan_of(b).update(careTeam=[{"reference": 7}])),
        spoiled(lambda b: _careplan_of(b).update(activity=[{}, {"detail": []}, "x"])),
        spoiled(lambda b: _careplan_of(b).update(author={"reference": "urn:uuid:nowhere"})),
        spoiled(lambda b: _careplan_of(b).update(goal=[{"reference": _careplan_url(b)}])),
        spoiled(lambda b: _careplan_of(b).pop("identifier")),
        spoiled(lambda b: _resource(b, "Goal").update(lifecycleStatus=["active"])),
        spoiled(lambda b: _resource(b, "Patient").update(identifier=[{"value": 1}], name=None)),
        spoiled(lambda b: _resource(b, "CareTeam").update(participant=[{"role": "x"}])),
        spoiled(lambda b: b["entry"].append({"resource": None})),
        spoiled(lambda b: b["entry"].append({"resource": {"resourceType": "<script>"}})),
        spoiled(lambda b: b["entry"].append({"fullUrl": 1, "resource": {"resourceType": 1}})),
        spoiled(lambda b: b.update(entry=[])),
        spoiled(lambda b: b.update(entry={"0": 1})),
        spoiled(lambda b: _with_several_problems(b)),
        {"resourceType": "Parameters", "parameter": "x"},
        {"resourceType": 12},
        {},
    ]


def _careplan_url(bundle: dict[str, Any]) -> str:
    return str(bundle["entry"][_index(bundle, "CarePlan")]["fullUrl"])


def test_no_answer_to_a_broken_bundle_speaks_python_and_none_writes(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    answers = []
    for broken in _broken_bundles(draft):
        answers.append(_post(service, ehr, broken))
        answers.append(
            service.post("/fhir/Bundle/$validate", content=json.dumps(broken), headers=ehr)
        )

    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.text
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        for issue in outcome["issue"]:
            assert issue["severity"] == "error"
            # Each place in a resource is named; a body that is no resource has no places.
            assert issue.get("expression") or answer.status_code == 400, issue
            assert not PYTHON_WORDS.search(issue["diagnostics"]), issue
    assert service.get(f"/contracts/{draft.id}", headers=ehr).status_code == 404


# What an EHR writes beyond the contract's fields (tests/data/sent/) is read back, and kept
# through changes made elsewhere.

FROM_AN_EHR = "sent/elderly-psychiatry-from-an-ehr.bundle.json"


def _from_an_ehr() -> tuple[str, dict[str, Any]]:
    contract_id = f"tx-{uuid.uuid4().hex[:16]}"
    return contract_id, load_data(FROM_AN_EHR, contract=contract_id, patient=unique_personnummer())


def _sent_records(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [named(e["resource"], bundle_names(bundle)) for e in bundle["entry"]]


def test_every_element_an_ehr_sent_isread_back(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str
) -> None:
    contract_id, bundle = _from_an_ehr()

    created = _post(service, ehr, bundle)

    assert created.status_code == 200, created.text
    stored = read_back(service, ehr, conformance_loaded, contract_id)
    assert losses(_sent_records(bundle), stored) == {}
    assert {"Condition", "Encounter"} <= {r["resourceType"] for r in stored}


def test_a_change_through_the_json_facade_keeps_what_the_ehr_sent(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str
) -> None:
    contract_id, bundle = _from_an_ehr()
    assert _post(service, ehr, bundle).status_code == 200
    json_headers = {**ehr, "Content-Type": "application/json"}
    current = service.get(f"/contracts/{contract_id}", headers=json_headers)
    changed = current.json()
    linked_goal = changed["goals"][0]["key"]
    assert changed["activities"][0]["goals"] == [linked_goal], "the link is a field"
    assert changed["description"] == "Sender's own description of the plan"
    changed["title"] = "Changed in the JSON facade"
    changed["goals"] = changed["goals"][1:]
    changed["activities"][0]["goals"] = []

    put = service.put(
        f"/contracts/{contract_id}",
        json=changed,
        headers={**json_headers, "If-Match": current.headers["ETag"]},
    )

    assert put.status_code == 200, put.text
    sent_careplan = next(r for r in _sent_records(bundle) if r["resourceType"] == "CarePlan")
    stored = read_back(service, ehr, conformance_loaded, contract_id)
    careplan = next(r for r in stored if r["resourceType"] == "CarePlan")
    assert careplan["title"] == "Changed in the JSON facade"
    for element in ("description", "category", "created", "addresses", "encounter"):
        assert careplan[element] == sent_careplan[element]
    assert missing(careplan["identifier"], sent_careplan["identifier"]) == []
    assert 'class="patient-contract"' in careplan["text"]["div"], "the narrative is ours again"
    detail = careplan["activity"][0]
    assert detail["progress"] == [{"text": "Went well"}]
    assert "goal" not in detail["detail"], f"the link to the removed goal {linked_goal} went too"


def test_no_json_client_writes_fhir_elements_of_its_own(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft().model_dump(mode="json")
    draft["sent"] = {"urn:uuid:0": {"comment": "not through the JSON facade"}}

    response = service.post(
        "/contracts", json=draft, headers={**ehr, "Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert "$.sent" in response.text
    assert not PYTHON_WORDS.search(response.text)
    assert service.get(f"/contracts/{draft['id']}", headers=ehr).status_code == 404


def _count(hapi: str, kind: str, identifier: str) -> int:
    found = httpx.get(f"{hapi}/{kind}", params={"identifier": identifier, "_summary": "count"})
    return int(found.json()["total"])


def test_a_record_the_next_version_no_longer_holds_is_deleted_with_its_links(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str
) -> None:
    contract_id, bundle = _from_an_ehr()
    assert _post(service, ehr, bundle).status_code == 200
    condition = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition")
    bundle["entry"].remove(condition)
    text = json.dumps(bundle).replace(condition["fullUrl"], "urn:uuid:gone")
    without = json.loads(text)
    for entry in without["entry"]:
        resource = entry["resource"]
        resource.pop("addresses", None)
        for activity in resource.get("activity", []):
            activity.get("detail", {}).pop("reasonReference", None)
        if resource["resourceType"] == "CarePlan":
            entry["request"]["ifMatch"] = 'W/"1"'

    updated = _post(service, ehr, without)

    assert updated.status_code == 200, updated.text
    assert _count(conformance_loaded, "Condition", f"urn:oid:1.2.752.999.4|DIAG-{contract_id}") == 0
    stored = read_back(service, ehr, conformance_loaded, contract_id)
    assert [r["resourceType"] for r in stored].count("Encounter") == 1
    assert losses(_sent_records(without), stored) == {}


def test_a_record_of_another_patient_or_of_no_clinical_kind_is_refused(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str
) -> None:
    contract_id, bundle = _from_an_ehr()
    index = next(
        i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Condition"
    )
    bundle["entry"][index]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    bundle["entry"].append(
        {
            "resource": {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "watch everything",
                "criteria": "Patient?",
                "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:1/"},
            },
            "request": {"method": "POST", "url": "Subscription"},
        }
    )

    refused = _post(service, ehr, bundle)

    assert refused.status_code == 422, refused.text
    places = {i["expression"][0] for i in refused.json()["issue"]}
    assert f"Bundle.entry[{index}].resource.subject" in places
    assert f"Bundle.entry[{len(bundle['entry']) - 1}].resource" in places
    assert _count(conformance_loaded, "Condition", f"urn:oid:1.2.752.999.4|DIAG-{contract_id}") == 0


def _plain_plan(
    plan: str, patient: str, description: str, unit: str = UNIT.split("|")[1]
) -> dict[str, Any]:
    # A clinician of its own: each test's plan writes its own shared records.
    return load_data(
        "sent/plain-r4-plan.bundle.json",
        plan=plan,
        patient=patient,
        description=description,
        clinician=f"SE2321000065-P{plan[:10].upper()}",
        unit=unit,
    )


def test_another_ehrs_plan_is_taken_and_its_own_identifier_finds_it_again(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str
) -> None:
    plan, patient = uuid.uuid4().hex[:12], unique_personnummer()
    first = _plain_plan(plan, patient, "Efter operationen")

    created = _post(service, ehr, first)
    sender_id = f"urn:oid:1.2.752.999.9|PLAN-{plan}"
    contract_id = contract_written(service, ehr, created)
    second = _plain_plan(plan, patient, "Efter operationen, med hemtjänst")
    careplan = next(e for e in second["entry"] if e["resource"]["resourceType"] == "CarePlan")
    careplan["request"]["ifMatch"] = 'W/"1"'
    updated = _post(service, ehr, second)

    assert created.status_code == 200, created.text
    assert updated.status_code == 200, updated.text
    assert _count(conformance_loaded, "CarePlan", sender_id) == 1, "the same plan, not a second"
    stored = read_back(service, ehr, conformance_loaded, contract_id)
    assert losses(_sent_records(second), stored) == {}
    read = service.get(f"/contracts/{contract_id}", headers=ehr).json()
    # The patient's walk, and the medication review its performer's unit owns.
    owned = [(a["description"], a["owner"]) for a in read["activities"]]
    assert owned == [("Daglig promenad", "patient"), ("Läkemedelsgenomgång", "care-unit")]
    unit = _unit_of(second)
    assert read["activities"][1]["organization"]["identifier"]["value"] == unit
    assert [c["kind"] for c in read["care_contacts"]] == ["fast-vardkontakt"]


def test_an_activity_of_a_municipality_is_the_municipalitys(
    service: TestClient, issuer: TestIssuer
) -> None:
    unit = unique_hsa_id()
    bundle = _plain_plan(uuid.uuid4().hex[:12], unique_personnummer(), "Hemma", unit=unit)
    organization = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization"
    )
    # Named as a municipality, with no kind of ours.
    organization["name"] = "Växjö kommun, hemsjukvården"
    del organization["type"]
    headers = {**issuer.headers("ehr", organization=f"hsa-id|{unit}"), **FHIR_JSON}

    created = _post(service, headers, bundle)

    assert created.status_code == 200, created.text
    contract_id = contract_written(service, headers, created)
    read = service.get(f"/contracts/{contract_id}", headers=headers).json()
    assert [a["owner"] for a in read["activities"]] == ["patient", "municipality"]
    assert read["responsible_clinician"]["organization"]["kind"] == "municipality"


def _unit_of(bundle: dict[str, Any]) -> str:
    """The HSA-id of the unit the plain plan's Organization is."""
    return next(
        str(e["resource"]["identifier"][0]["value"])
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Organization"
    )


def test_a_reference_no_entry_answers_is_refused_at_its_place(
    service: TestClient, ehr: dict[str, str]
) -> None:
    bundle = _plain_plan(uuid.uuid4().hex[:12], unique_personnummer(), "x")
    careplan = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan")
    careplan["resource"]["activity"][2]["reference"]["reference"] = "urn:uuid:nowhere"

    refused = _post(service, ehr, bundle)

    assert refused.status_code == 422, refused.text
    places = [i["expression"][0] for i in refused.json()["issue"]]
    assert "Bundle.entry[0].resource.activity[2].reference.reference" in places


def test_two_units_plans_with_one_identifier_are_two_contracts(
    service: TestClient, ehr: dict[str, str], issuer: TestIssuer, conformance_loaded: str
) -> None:
    # An EHR vendor numbering every customer's plans in one system: each unit's is its own.
    plan, patient, other_unit = uuid.uuid4().hex[:12], unique_personnummer(), unique_hsa_id()
    theirs = {**issuer.headers("ehr", organization=f"hsa-id|{other_unit}"), **FHIR_JSON}

    mine = _post(service, ehr, _plain_plan(plan, patient, "Vår plan"))
    other = _post(service, theirs, _plain_plan(plan, patient, "Deras plan", unit=other_unit))

    assert (mine.status_code, other.status_code) == (200, 200), (mine.text, other.text)
    assert contract_written(service, ehr, mine) != contract_written(service, theirs, other)
    assert _count(conformance_loaded, "CarePlan", f"urn:oid:1.2.752.999.9|PLAN-{plan}") == 2


def test_the_answer_is_a_transaction_response_as_r4_has_it(
    service: TestClient, ehr: dict[str, str]
) -> None:
    draft = _draft()
    sent = _bundle(draft)

    created = _post(service, ehr, sent)
    edited = draft.model_copy(update={"title": "Ändrad genom FHIR"})
    updated = _post(service, ehr, _bundle(edited, 1))

    assert created.status_code == 200, created.text
    answer = created.json()
    assert answer["type"] == "transaction-response"
    responses = [e["response"] for e in answer["entry"]]
    assert len(responses) == len(sent["entry"])
    for entry, response in zip(sent["entry"], responses, strict=True):
        kind = entry["resource"]["resourceType"]
        # Each entry says where its record is now, at which version, written when.
        assert response["location"].startswith(f"{kind}/"), (kind, response)
        version = response["location"].split("/_history/")[1]
        assert response["etag"] == f'W/"{version}"'
        assert response["lastModified"]
        read = service.get(f"/fhir/{response['location'].split('/_history/')[0]}", headers=ehr)
        assert read.status_code == 200, read.text
    statuses = {
        e["resource"]["resourceType"]: r["status"]
        for e, r in zip(sent["entry"], responses, strict=True)
    }
    assert statuses["CarePlan"] == "201 Created"
    assert statuses["Goal"] == "201 Created"
    # The second write changes the plan and finds the patient as it was.
    again = {
        e["resource"]["resourceType"]: r
        for e, r in zip(
            _bundle(edited, 1)["entry"],
            [e["response"] for e in updated.json()["entry"]],
            strict=True,
        )
    }
    assert again["CarePlan"]["status"] == "200 OK"
    assert again["CarePlan"]["etag"] == 'W/"2"'
    assert again["Patient"]["status"] == "200 OK"
    assert again["Patient"]["location"] == next(
        r["location"]
        for e, r in zip(sent["entry"], responses, strict=True)
        if e["resource"]["resourceType"] == "Patient"
    )


@pytest.mark.parametrize("preference", ["representation", "OperationOutcome"])
def test_prefer_puts_each_record_or_its_outcome_in_the_answer(
    service: TestClient, ehr: dict[str, str], preference: str
) -> None:
    sent = _bundle(_draft())

    answer = _post(service, {**ehr, "Prefer": f"return={preference}"}, sent)

    assert answer.status_code == 200, answer.text
    entries = answer.json()["entry"]
    assert len(entries) == len(sent["entry"])
    if preference == "representation":
        for entry in entries:
            location = entry["response"]["location"]
            assert (
                f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
                == (location.split("/_history/")[0])
            )
    else:
        said = [e["response"]["outcome"]["issue"][0]["diagnostics"] for e in entries]
        assert said == [e["response"]["status"] for e in entries]
        assert all("resource" not in e for e in entries)
