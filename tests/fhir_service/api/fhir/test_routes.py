"""The FHIR endpoint against the real HAPI: reads, searches, includes, paging and history, each
kept within the caller's walls, in our addresses, with OperationOutcomes for errors.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
FHIR_JSON = "application/fhir+json"
KNEE_UNIT = "hsa-id|SE2321000065-1003"
DRAFT_UNIT = "hsa-id|SE2321000065-1254"
OUR_BASE = "http://testserver/fhir"
CONTRACT_SYSTEM = "http://fhir.patient-contracts.org/identifier/contract"
TYPES = {"CarePlan", "CareTeam", "Goal", "Appointment", "Provenance", "AuditEvent"}


def _contract(name: str, personnummer: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    data["id"] = f"fhir-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = personnummer
    data.update(changes)
    return data


@pytest.fixture(scope="module")
def world(service: TestClient, issuer: TestIssuer) -> dict[str, Any]:
    """Patients A and B: each an agreed knee contract; A also a draft, and a restricted goal."""
    a, b = unique_personnummer(), unique_personnummer()
    mine = _contract("knee-replacement", a)
    mine["goals"][1]["confidentiality"] = "restricted"
    contracts = {
        "a": mine,
        "b": _contract("knee-replacement", b),
        "a-draft": _contract("elderly-psychiatry", a),
    }
    for key, contract in contracts.items():
        unit = DRAFT_UNIT if key == "a-draft" else KNEE_UNIT
        headers = issuer.headers("ehr", organization=unit)
        assert service.post("/contracts", json=contract, headers=headers).status_code == 201
    ids = {}
    for key, contract in contracts.items():
        found = service.get(
            "/fhir/CarePlan",
            params={
                "identifier": f"http://fhir.patient-contracts.org/identifier/contract|{contract['id']}"
            },
            headers=issuer.headers(
                "ehr", organization=DRAFT_UNIT if key == "a-draft" else KNEE_UNIT
            ),
        )
        ids[key] = found.json()["entry"][0]["resource"]["id"]
    return {
        "contracts": contracts,
        "careplans": ids,
        "a": issuer.headers("patient", patient=f"personnummer|{a}"),
        "b": issuer.headers("patient", patient=f"personnummer|{b}"),
        "unit": issuer.headers("ehr", organization=KNEE_UNIT),
    }


def _entries(response: Any, kind: str | None = None) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [
        e["resource"]
        for e in response.json().get("entry", [])
        if kind is None or e["resource"]["resourceType"] == kind
    ]


def _contract_of(resource: dict[str, Any]) -> str:
    return str(resource["identifier"][0]["value"]).split("/")[0]


def test_a_unit_reads_its_careplan_its_versions_and_history_in_our_addresses(
    service: TestClient, world: dict[str, Any], conformance_loaded: str
) -> None:
    careplan = world["careplans"]["a"]

    read = service.get(f"/fhir/CarePlan/{careplan}", headers=world["unit"])
    vread = service.get(f"/fhir/CarePlan/{careplan}/_history/1", headers=world["unit"])
    history = service.get(f"/fhir/CarePlan/{careplan}/_history", headers=world["unit"])

    assert read.status_code == 200, read.text
    assert read.headers["content-type"].startswith(FHIR_JSON)
    assert read.headers["etag"] == 'W/"1"'
    assert vread.json()["id"] == careplan
    assert [e["fullUrl"] for e in history.json()["entry"]] == [f"{OUR_BASE}/CarePlan/{careplan}"]
    hapi = urlsplit(conformance_loaded).netloc
    assert hapi not in read.text + vread.text + history.text


def test_elements_and_summary_cut_what_the_walls_let_through_and_say_so(
    service: TestClient, world: dict[str, Any]
) -> None:
    careplan = world["careplans"]["a"]

    searched = service.get(
        "/fhir/CarePlan",
        params={"_elements": "title,identifier", "_count": "1"},
        headers=world["a"],
    )
    read = service.get(f"/fhir/CarePlan/{careplan}?_summary=text", headers=world["unit"])
    theirs = service.get(f"/fhir/CarePlan/{careplan}?_elements=title", headers=world["b"])
    unknown = service.get(f"/fhir/CarePlan/{careplan}?_summary=everything", headers=world["unit"])

    # A patient's CarePlans are asked of HAPI without the draft withheld from them: counted.
    assert searched.json()["total"] == 1
    # Patient A's own plans, cut to what was named: no longer an empty page.
    found = _entries(searched, "CarePlan")
    assert found
    assert {_contract_of(r) for r in found} <= {world["contracts"]["a"]["id"]}
    assert all("activity" not in r and "title" in r for r in found)
    assert all(any(t["code"] == "SUBSETTED" for t in r["meta"]["tag"]) for r in found)
    assert set(read.json()) == {"resourceType", "id", "meta", "text", "status", "intent", "subject"}
    assert theirs.status_code == 404
    assert unknown.status_code == 400


def test_a_conditional_read_of_an_unchanged_record_is_304_and_of_a_changed_one_200(
    service: TestClient, world: dict[str, Any]
) -> None:
    careplan = world["careplans"]["a"]
    read = service.get(f"/fhir/CarePlan/{careplan}", headers=world["unit"])
    modified = read.headers["last-modified"]

    same = service.get(
        f"/fhir/CarePlan/{careplan}", headers={**world["unit"], "If-None-Match": 'W/"1"'}
    )
    strong = service.get(
        f"/fhir/CarePlan/{careplan}", headers={**world["unit"], "If-None-Match": '"1"'}
    )
    older = service.get(
        f"/fhir/CarePlan/{careplan}", headers={**world["unit"], "If-None-Match": 'W/"0"'}
    )
    since = service.get(
        f"/fhir/CarePlan/{careplan}", headers={**world["unit"], "If-Modified-Since": modified}
    )
    before = service.get(
        f"/fhir/CarePlan/{careplan}",
        headers={**world["unit"], "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    )
    theirs = service.get(
        f"/fhir/CarePlan/{careplan}", headers={**world["b"], "If-None-Match": 'W/"1"'}
    )

    assert modified.endswith(" GMT")
    assert (same.status_code, same.content) == (304, b"")
    assert strong.status_code == 304
    assert older.status_code == 200
    assert since.status_code == 304
    assert before.status_code == 200
    # Outside the walls a conditional read tells nothing either.
    assert theirs.status_code == 404


def test_a_patient_searches_only_their_own_records_of_every_type(
    service: TestClient, world: dict[str, Any]
) -> None:
    mine = world["contracts"]["a"]["id"]

    found = {
        kind: _entries(service.get(f"/fhir/{kind}?_count=100", headers=world["a"]), kind)
        for kind in ("CarePlan", "CareTeam", "Goal", "Appointment")
    }

    assert {_contract_of(r) for r in found["CarePlan"]} == {mine}
    for kind in ("CareTeam", "Goal", "Appointment"):
        assert found[kind], kind
        assert {_contract_of(r) for r in found[kind]} == {mine}, kind
    # The restricted goal stays behind, the other one comes.
    goals = {r["identifier"][0]["value"].split("/")[1] for r in found["Goal"]}
    assert goals == {world["contracts"]["a"]["goals"][0]["key"]}


def test_a_search_posted_as_a_form_finds_what_the_same_get_finds(
    service: TestClient, world: dict[str, Any]
) -> None:
    # FHIR's POST [type]/_search, as HAPI's generic client and fhirpy can send it.
    form = {"identifier": f"{urls.ID_CONTRACT}|{world['contracts']['a']['id']}"}

    posted = service.post(
        "/fhir/CarePlan/_search?_count=5",
        data=form,
        headers={**world["unit"], "Content-Type": "application/x-www-form-urlencoded"},
    )
    got = service.get("/fhir/CarePlan", params={**form, "_count": "5"}, headers=world["unit"])
    theirs = service.post("/fhir/CarePlan/_search", data=form, headers=world["b"])

    assert [r["id"] for r in _entries(posted)] == [r["id"] for r in _entries(got)]
    assert [r["id"] for r in _entries(posted)] == [world["careplans"]["a"]]
    [self_link] = [link["url"] for link in posted.json()["link"] if link["relation"] == "self"]
    assert self_link.startswith("http://testserver/fhir/CarePlan?_count=5&identifier=")
    # The walls hold for a posted search as for any other.
    assert _entries(theirs) == []


def test_another_patients_records_are_absent_however_they_are_asked_for(
    service: TestClient, world: dict[str, Any]
) -> None:
    theirs = world["careplans"]["b"]
    b_number = world["contracts"]["b"]["patient"]["identifier"]["value"]
    personnummer = "http://electronichealth.se/identifier/personnummer"

    read = service.get(f"/fhir/CarePlan/{theirs}", headers=world["a"])
    history = service.get(f"/fhir/CarePlan/{theirs}/_history", headers=world["a"])
    chained = service.get(
        f"/fhir/CarePlan?subject.identifier={personnummer}|{b_number}", headers=world["a"]
    )
    by_id = service.get(f"/fhir/CarePlan?_id={theirs}", headers=world["a"])
    included = service.get(
        "/fhir/Goal?_include=Goal:subject&_revinclude=CarePlan:goal", headers=world["a"]
    )

    assert read.status_code == 404
    assert read.headers["content-type"].startswith(FHIR_JSON)
    assert read.json()["resourceType"] == "OperationOutcome"
    assert history.status_code == 404
    assert _entries(chained) == []
    assert _entries(by_id) == []
    assert b_number not in included.text
    assert world["contracts"]["b"]["id"] not in included.text


def test_drafts_are_withheld_from_the_patient_but_not_from_their_unit(
    service: TestClient, world: dict[str, Any], issuer: TestIssuer
) -> None:
    draft = world["careplans"]["a-draft"]

    by_patient = service.get(f"/fhir/CarePlan/{draft}", headers=world["a"])
    by_unit = service.get(
        f"/fhir/CarePlan/{draft}", headers=issuer.headers("ehr", organization=DRAFT_UNIT)
    )

    assert by_patient.status_code == 404
    assert by_unit.status_code == 200


def test_a_paging_link_followed_by_someone_else_shows_them_only_their_own(
    service: TestClient, world: dict[str, Any]
) -> None:
    first = service.get("/fhir/Goal?_count=1", headers=world["unit"])
    links = {link["relation"]: link["url"] for link in first.json()["link"]}
    assert links["next"].startswith(f"{OUR_BASE}/Goal/_page?")

    replayed = service.get(links["next"], headers=world["b"])

    own = world["contracts"]["b"]["id"]
    assert {_contract_of(r) for r in _entries(replayed)} <= {own}
    assert "total" not in replayed.json()


@pytest.mark.parametrize("query", ["_summary=count", "_total=accurate", "_contained=true"])
def test_answers_that_would_count_or_carry_hidden_records_are_refused(
    service: TestClient, world: dict[str, Any], query: str
) -> None:
    # A patient's Goals: HAPI cannot tell those of the draft withheld from them.
    response = service.get(f"/fhir/Goal?{query}", headers=world["a"])

    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["expression"] == [query.split("=")[0]]


def test_counts_are_given_where_hapi_is_asked_for_only_what_the_caller_sees(
    service: TestClient, world: dict[str, Any]
) -> None:
    token = f"{urls.ID_CONTRACT}|{world['contracts']['a']['id']}"

    plans = service.get(
        "/fhir/CarePlan", params={"identifier": token, "_summary": "count"}, headers=world["unit"]
    )
    goals = service.get("/fhir/Goal", params={"_summary": "count"}, headers=world["unit"])
    directory = service.get(
        "/fhir/PractitionerRole", params={"_count": "1", "_total": "accurate"}, headers=world["a"]
    )

    mine = service.get("/fhir/CarePlan", params={"_summary": "count"}, headers=world["a"])

    assert (plans.status_code, plans.json()["total"]) == (200, 1), plans.text
    # Patient A has an agreed contract and a draft, which is the unit's alone.
    assert (mine.status_code, mine.json()["total"]) == (200, 1), mine.text
    # The unit's Goals are not asked of HAPI by unit: a count would count other units'.
    assert goals.status_code == 400
    assert directory.json()["total"] >= 1


def test_another_unit_sees_none_of_a_units_records(
    service: TestClient, world: dict[str, Any], issuer: TestIssuer
) -> None:
    stranger = issuer.headers("ehr", organization="hsa-id|SE2321000065-9999")

    read = service.get(f"/fhir/CarePlan/{world['careplans']['a']}", headers=stranger)
    goals = service.get("/fhir/Goal?_count=100", headers=stranger)

    assert read.status_code == 404
    assert _entries(goals) == []


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        ("booking", "/fhir/CarePlan", 403),
        ("auditor", "/fhir/CarePlan", 403),
        ("patient-without-claim", "/fhir/CarePlan", 403),
        (None, "/fhir/CarePlan", 401),
        ("patient", "/fhir/AuditEvent", 403),
    ],
)
def test_refusals_are_operation_outcomes(
    service: TestClient, issuer: TestIssuer, role: str | None, path: str, status: int
) -> None:
    headers = {}
    if role == "patient-without-claim":
        headers = issuer.headers("patient")
    elif role == "patient":
        headers = issuer.headers("patient", patient=f"personnummer|{unique_personnummer()}")
    elif role is not None:
        headers = issuer.headers(role)  # type: ignore[arg-type]

    response = service.get(path, headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.json()["resourceType"] == "OperationOutcome"


def test_an_auditor_searches_the_audit_trail(service: TestClient, issuer: TestIssuer) -> None:
    response = service.get("/fhir/AuditEvent?_count=5", headers=issuer.headers("auditor"))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "searchset"


@pytest.mark.parametrize(
    ("headers", "query"),
    [({"Accept": "application/fhir+xml"}, ""), ({}, "?_format=xml")],
)
def test_xml_is_refused_with_406(
    service: TestClient, world: dict[str, Any], headers: dict[str, str], query: str
) -> None:
    response = service.get(f"/fhir/CarePlan{query}", headers={**world["unit"], **headers})

    assert response.status_code == 406
    assert "JSON" in response.json()["issue"][0]["diagnostics"]


def test_an_unknown_search_parameter_is_an_operation_outcome(
    service: TestClient, world: dict[str, Any], conformance_loaded: str
) -> None:
    response = service.get("/fhir/CarePlan?no-such-parameter=1", headers=world["unit"])

    assert response.status_code == 400
    assert "no-such-parameter" in response.json()["issue"][0]["diagnostics"]
    assert urlsplit(conformance_loaded).netloc not in response.text


def test_the_capability_statement_lists_exactly_what_is_offered(
    service: TestClient, conformance_loaded: str
) -> None:
    response = service.get("/fhir/metadata")

    statement = response.json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert response.status_code == 200
    assert set(resources) == {
        "CarePlan",
        "CareTeam",
        "Goal",
        "Appointment",
        "Provenance",
        "AuditEvent",
        "Bundle",
        # What a contract's records and the booking operations name.
        "Patient",
        "RelatedPerson",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "HealthcareService",
        "Schedule",
        "Slot",
        # The patient's leaves for relatives.
        "Consent",
        # Our conformance resources, for validators.
        "CodeSystem",
        "ConceptMap",
        "OperationDefinition",
        "SearchParameter",
        "StructureDefinition",
        "ValueSet",
    }
    assert {i["code"] for i in resources["StructureDefinition"]["interaction"]} == {
        "read",
        "search-type",
    }
    assert "interaction" not in resources["Bundle"]  # only $validate: nothing is stored
    assert {i["code"] for i in resources["Consent"]["interaction"]} == {
        "read",
        "search-type",
        "create",
        "update",
    }
    assert {i["code"] for i in resources["CarePlan"]["interaction"]} == {
        "read",
        "vread",
        "history-instance",
        "history-type",
        "search-type",
        "update",
    }
    assert {i["code"] for i in resources["Goal"]["interaction"]} == {
        "read",
        "vread",
        "history-instance",
        "history-type",
        "search-type",
        "create",
        "update",
    }
    assert resources["Goal"]["versioning"] == "versioned-update"
    assert {i["code"] for i in resources["AuditEvent"]["interaction"]} == {
        "read",
        "vread",
        "history-instance",
        "history-type",
        "search-type",
    }
    assert {i["code"] for i in resources["Patient"]["interaction"]} == {
        "read",
        "vread",
        "history-instance",
        "history-type",
        "search-type",
    }
    assert "Provenance:target" in resources["CarePlan"]["searchRevInclude"]
    assert "CarePlan:goal" in resources["Goal"]["searchRevInclude"]
    assert resources["AuditEvent"]["versioning"] == "versioned"
    assert "responsible-clinician" in {p["name"] for p in resources["CarePlan"]["searchParam"]}
    # What _include follows is declared, ours too.
    assert {"CarePlan:goal", "CarePlan:responsible-unit", "CarePlan:contract-record"} <= set(
        resources["CarePlan"]["searchInclude"]
    )
    assert resources["CarePlan"]["supportedProfile"] == [
        "http://fhir.patient-contracts.org/StructureDefinition/patient-contract-careplan"
    ]
    assert statement["rest"][0]["interaction"] == [{"code": "transaction"}]
    assert resources["CarePlan"]["operation"] == [
        {
            "name": name,
            "definition": f"http://fhir.patient-contracts.org/OperationDefinition/{definition}",
        }
        for name, definition in [
            ("coherent-plan", "coherent-plan"),
            ("propose", "careplan-propose"),
            ("sign", "careplan-sign"),
            ("progress", "careplan-progress"),
            ("proposal", "careplan-proposal"),
        ]
    ]
    assert statement["implementation"]["url"] == OUR_BASE
    assert urlsplit(conformance_loaded).netloc not in response.text
    assert "HAPI" not in json.dumps(statement["software"])


def test_what_a_careplan_names_can_be_followed_within_the_walls(
    service: TestClient, world: dict[str, Any], issuer: TestIssuer
) -> None:
    careplan = service.get(f"/fhir/CarePlan/{world['careplans']['a']}", headers=world["unit"])
    plan = careplan.json()
    patient = plan["subject"]["reference"]
    author = plan["author"]["reference"]
    other = service.get(f"/fhir/CarePlan/{world['careplans']['b']}", headers=world["unit"])
    elsewhere = issuer.headers("ehr", organization="hsa-id|SE2321000065-9999")

    for reference in (patient, author):
        followed = service.get(f"/fhir/{reference}", headers=world["unit"])
        assert followed.status_code == 200, (reference, followed.text)
        assert followed.json()["resourceType"] == reference.split("/")[0]
        assert followed.headers["etag"].startswith('W/"')
    # The patient reads their own record; the directory is open to every party.
    assert service.get(f"/fhir/{patient}", headers=world["a"]).status_code == 200
    assert service.get(f"/fhir/{author}", headers=world["a"]).status_code == 200
    # Another patient's record, and a unit with no contract of theirs, find nothing.
    assert service.get(f"/fhir/{patient}", headers=world["b"]).status_code == 404
    assert service.get(f"/fhir/{patient}", headers=elsewhere).status_code == 404
    assert other.json()["subject"]["reference"] != patient
    # A search of patients holds only the caller's.
    mine = service.get("/fhir/Patient", headers=world["a"])
    assert [p["id"] for p in _entries(mine, "Patient")] == [patient.split("/")[1]]
    theirs = service.get("/fhir/Patient", params={"_id": patient.split("/")[1]}, headers=elsewhere)
    assert _entries(theirs, "Patient") == []


def test_type_history_shows_only_what_the_caller_may_see(
    service: TestClient, world: dict[str, Any]
) -> None:
    first = service.get(f"/fhir/CarePlan/{world['careplans']['a']}", headers=world["unit"])
    since = first.json()["meta"]["lastUpdated"]
    asked = {"_since": since, "_count": "100"}

    mine = service.get("/fhir/CarePlan/_history", params=asked, headers=world["a"])
    unit = service.get("/fhir/CarePlan/_history", params=asked, headers=world["unit"])

    contracts = {_contract_of(r) for r in _entries(mine, "CarePlan")}
    assert world["contracts"]["a"]["id"] in contracts
    # Not B's, and not A's draft, which is the unit's alone.
    assert world["contracts"]["b"]["id"] not in contracts
    assert world["contracts"]["a-draft"]["id"] not in contracts
    assert "total" not in mine.json()
    theirs = {_contract_of(r) for r in _entries(unit, "CarePlan")}
    assert {world["contracts"]["a"]["id"], world["contracts"]["b"]["id"]} <= theirs
    assert world["contracts"]["a-draft"]["id"] not in theirs  # another unit's


def test_a_revinclude_the_caller_may_not_read_is_refused_not_dropped(
    service: TestClient, world: dict[str, Any]
) -> None:
    asked = service.get(
        "/fhir/CarePlan",
        params={"_id": world["careplans"]["a"], "_revinclude": "Provenance:target"},
        headers=world["unit"],
    )

    assert asked.status_code == 403, asked.text
    [issue] = asked.json()["issue"]
    assert issue["expression"] == ["_revinclude"]
    assert "Provenance" in issue["diagnostics"]


def test_a_patient_with_nothing_stored_still_reads_the_directory(
    service: TestClient, world: dict[str, Any], issuer: TestIssuer
) -> None:
    newcomer = issuer.headers("patient", patient=f"personnummer|{unique_personnummer()}")

    directory = service.get("/fhir/PractitionerRole", params={"_count": "1"}, headers=newcomer)
    plans = service.get("/fhir/CarePlan", headers=newcomer)

    assert world["careplans"]  # the world's contracts name practitioner roles
    assert len(_entries(directory, "PractitionerRole")) == 1
    assert _entries(plans) == []
