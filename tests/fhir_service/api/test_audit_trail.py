"""The audit trail end to end: requests through the service, AuditEvents and Provenance in HAPI.

Each auditor question of the README is asked here exactly as the README asks it: one FHIR query
against the FHIR server that keeps the trail.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_service.api import create_app
from fhir_service.mapping import urls
from fhir_service.settings import Settings
from tests.auth import ISSUER, TestIssuer
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
UNIT = "hsa-id|SE2321000065-1254"
OTHER_UNIT = "hsa-id|SE2321000065-1003"
PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
HSA = "urn:oid:1.2.752.29.4.19"
CONSENT_SIGNATURE = "1.2.840.10065.1.12.1.7"
VERIFICATION_SIGNATURE = "1.2.840.10065.1.12.1.5"


@dataclass(frozen=True)
class Story:
    """What happened to one contract, and who did it."""

    hapi: str
    contract_id: str
    personnummer: str
    clinician: str
    patient: str
    stranger: str
    fhir_reader: str
    agreed_version: int
    agreed_at: list[str]
    day: str
    signed_contract_id: str
    signing_patient: str
    signing_clinician: str


def _contract() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"audit-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    return data


@pytest.fixture(scope="module")
def story(
    conformance_loaded: str, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Story:
    """A clinician creates, reads, searches and agrees a contract; the patient reads it; a
    clinician of another unit tries to; someone without a token tries too."""
    directory = tmp_path_factory.mktemp("audit")
    settings = Settings(
        hapi_url=conformance_loaded,
        database_url=f"sqlite:///{directory / 'service.db'}",
        data_dir=directory,
        **issuer.settings(),
    )
    suffix = uuid.uuid4().hex[:8]
    clinician, patient, stranger = f"dr-anna-{suffix}", f"patient-{suffix}", f"dr-olle-{suffix}"
    fhir_reader = f"ehr-fhir-{suffix}"
    contract = _contract()
    personnummer = contract["patient"]["identifier"]["value"]
    as_clinician = issuer.headers("clinician", organization=UNIT, subject=clinician)
    agreed_at = ["2026-11-20T09:00:00+00:00", "2026-11-20T09:05:00+00:00"]
    with TestClient(create_app(settings), raise_server_exceptions=False) as service:
        while service.get("/ready").status_code != 200:
            time.sleep(0.2)
        created = service.post("/contracts", json=contract, headers=as_clinician)
        assert created.status_code == 201, created.text
        assert service.get(f"/contracts/{contract['id']}", headers=as_clinician).status_code == 200
        searched = service.get(
            f"/contracts?patient=personnummer|{personnummer}", headers=as_clinician
        )
        assert searched.status_code == 200
        agreed = service.post(
            f"/contracts/{contract['id']}/agree",
            json={
                "agreements": [
                    {"party": "patient", "agreed_at": agreed_at[0]},
                    {"party": "responsible-clinician", "agreed_at": agreed_at[1]},
                ]
            },
            headers={**as_clinician, "If-Match": created.headers["ETag"]},
        )
        assert agreed.status_code == 200, agreed.text
        as_patient = issuer.headers(
            "patient", patient=f"personnummer|{personnummer}", subject=patient
        )
        assert service.get(f"/contracts/{contract['id']}", headers=as_patient).status_code == 200
        as_stranger = issuer.headers("clinician", organization=OTHER_UNIT, subject=stranger)
        assert service.get(f"/contracts/{contract['id']}", headers=as_stranger).status_code == 404
        assert service.get(f"/contracts/{contract['id']}").status_code == 401
        # Another system of the unit finds and reads the CarePlan through the FHIR endpoint.
        as_fhir_reader = issuer.headers("ehr", organization=UNIT, subject=fhir_reader)
        found = service.get(
            "/fhir/CarePlan",
            params={"identifier": f"{urls.ID_CONTRACT}|{contract['id']}"},
            headers=as_fhir_reader,
        )
        careplan = found.json()["entry"][0]["resource"]["id"]
        assert service.get(f"/fhir/CarePlan/{careplan}", headers=as_fhir_reader).status_code == 200
        # Another patient agrees their contract in their own name, and its clinician in theirs.
        signing_patient, signing_clinician = f"patient-own-{suffix}", f"dr-berit-{suffix}"
        signed = _contract()
        signed_personnummer = signed["patient"]["identifier"]["value"]
        as_signing_clinician = issuer.headers(
            "clinician", organization=UNIT, subject=signing_clinician
        )
        as_signing_patient = issuer.headers(
            "patient", patient=f"personnummer|{signed_personnummer}", subject=signing_patient
        )
        draft = service.post("/contracts", json=signed, headers=as_signing_clinician)
        assert draft.status_code == 201, draft.text
        proposed = service.post(
            f"/contracts/{signed['id']}/propose",
            headers={**as_signing_clinician, "If-Match": draft.headers["ETag"]},
        )
        for who in (as_signing_patient, as_signing_clinician):
            answered = service.post(
                f"/contracts/{signed['id']}/sign",
                json={"decision": "agree"},
                headers={**who, "If-Match": proposed.headers["ETag"]},
            )
            assert answered.status_code == 200, answered.text
        assert answered.json()["status"] == "agreed"
        # Eight records name the patient; the writer sends them to HAPI in the background.
        _wait_for(conformance_loaded, f"entity-identifier={PERSONNUMMER}|{personnummer}", 8)
    return Story(
        hapi=conformance_loaded,
        contract_id=contract["id"],
        personnummer=personnummer,
        clinician=clinician,
        patient=patient,
        stranger=stranger,
        fhir_reader=fhir_reader,
        agreed_version=int(agreed.json()["version"]),
        agreed_at=agreed_at,
        day=datetime.now(UTC).date().isoformat(),
        signed_contract_id=signed["id"],
        signing_patient=signing_patient,
        signing_clinician=signing_clinician,
    )


def _wait_for(hapi: str, query: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(_search(hapi, f"AuditEvent?{query}")) < count:
        assert time.monotonic() < deadline, f"fewer than {count} AuditEvents for {query}"
        time.sleep(0.5)


def _search(hapi: str, query: str) -> list[dict[str, Any]]:
    """The resources one FHIR query finds (every page), as an auditor's client would read."""
    found: list[dict[str, Any]] = []
    url: str | None = f"{hapi}/{query}"
    while url is not None:
        bundle = httpx.get(url, headers={"Accept": "application/fhir+json"}, timeout=30).json()
        found += [entry["resource"] for entry in bundle.get("entry", [])]
        url = next(
            (link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None
        )
    return found


def _users(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each requesting user's subject, with the outcomes of their events."""
    users: dict[str, set[str]] = {}
    for event in events:
        for agent in event["agent"]:
            identifier = agent.get("who", {}).get("identifier", {})
            if agent.get("requestor") and identifier.get("system") == ISSUER:
                users.setdefault(identifier["value"], set()).add(event["outcome"])
    return users


def _day_range(day: str) -> str:
    following = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    return f"date=ge{day}T00:00:00Z&date=lt{following}T00:00:00Z"


def test_who_read_contract_x(story: Story) -> None:
    events = _search(
        story.hapi,
        f"AuditEvent?entity-identifier={urls.ID_CONTRACT}|{story.contract_id}&action=R",
    )

    # The clinician, the patient and the unit's other system (through FHIR) read it; the other
    # unit's clinician was refused (4).
    assert _users(events) == {
        story.clinician: {"0"},
        story.patient: {"0"},
        story.stranger: {"4"},
        story.fhir_reader: {"0"},
    }


def test_everything_user_y_did_on_day_z(story: Story) -> None:
    events = _search(
        story.hapi,
        f"AuditEvent?agent-identifier={ISSUER}|{story.clinician}&{_day_range(story.day)}",
    )

    subtypes = sorted(c["code"] for e in events for c in e["subtype"] if "restful" in c["system"])
    assert subtypes == ["create", "operation", "read", "search-type"]
    assert {e["outcome"] for e in events} == {"0"}
    agree = next(e for e in events if e["action"] == "U")
    assert {c["code"] for c in agree["subtype"]} == {"operation", "agree"}


def test_every_access_to_patient_p_in_a_period(story: Story) -> None:
    events = _search(
        story.hapi,
        f"AuditEvent?entity-identifier={PERSONNUMMER}|{story.personnummer}&{_day_range(story.day)}",
    )

    assert len(events) == 8
    assert _users(events) == {
        story.clinician: {"0"},
        story.patient: {"0"},
        story.stranger: {"4"},
        story.fhir_reader: {"0"},
    }
    clinician_reads = [e for e in events if e["action"] == "R" and story.clinician in json.dumps(e)]
    on_behalf_of = [
        a["who"].get("identifier") for a in clinician_reads[0]["agent"] if not a["requestor"]
    ]
    assert {"system": HSA, "value": UNIT.split("|")[1]} in on_behalf_of


def test_who_agreed_version_n_of_a_contract(story: Story) -> None:
    version = f"{story.contract_id}/_history/{story.agreed_version}"

    provenances = _search(
        story.hapi, f"Provenance?target-identifier={urls.ID_CONTRACT_VERSION}|{version}"
    )

    assert len(provenances) == 1
    signatures = provenances[0]["signature"]
    # Given elsewhere and recorded in one call: the unit signs on each party's behalf.
    assert sorted(s["onBehalfOf"]["reference"].split("/")[0] for s in signatures) == [
        "Patient",
        "PractitionerRole",
    ]
    assert {s["who"]["reference"].split("/")[0] for s in signatures} == {"Organization"}
    assert sorted(datetime.fromisoformat(s["when"]) for s in signatures) == [
        datetime.fromisoformat(t) for t in story.agreed_at
    ]
    careplan = provenances[0]["target"][0]["reference"]
    assert careplan.endswith(f"/_history/{story.agreed_version}")


def test_who_agreed_a_contract_in_their_own_name_or_recorded(story: Story) -> None:
    def agreed(contract_id: str) -> list[dict[str, Any]]:
        return _search(
            story.hapi,
            f"Provenance?agreement-target:CarePlan.identifier={urls.ID_CONTRACT}|{contract_id}",
        )

    def kinds(provenance: dict[str, Any]) -> set[str]:
        return {t["code"] for s in provenance["signature"] for t in s["type"]}

    (recorded,) = agreed(story.contract_id)
    assert recorded["policy"] == [urls.POLICY_AGREEMENT_ATTESTED]
    assert kinds(recorded) == {VERIFICATION_SIGNATURE}

    own = agreed(story.signed_contract_id)
    assert len(own) == 3
    (agreement,) = [p for p in own if p["meta"]["tag"][0]["system"] == urls.TAG_AGREEMENT]
    assert "policy" not in agreement
    assert kinds(agreement) == {CONSENT_SIGNATURE}
    signers = {
        s["who"]["identifier"]["value"]: s["onBehalfOf"]["reference"].split("/")[0]
        for p in own
        if p["meta"]["tag"][0]["system"] == urls.TAG_SIGNATURE
        for s in p["signature"]
    }
    assert signers == {
        story.signing_patient: "Patient",
        story.signing_clinician: "PractitionerRole",
    }


def test_every_change_has_a_provenance_naming_its_author_and_versions(story: Story) -> None:
    changes = _search(
        story.hapi, f"Provenance?target-identifier={urls.ID_CONTRACT}|{story.contract_id}"
    )

    assert sorted(p["activity"]["text"] for p in changes) == ["agree", "create"]
    for provenance in changes:
        author = provenance["agent"][0]
        assert author["who"]["identifier"] == {"system": ISSUER, "value": story.clinician}
        assert author["onBehalfOf"]["identifier"] == {"system": HSA, "value": UNIT.split("|")[1]}
        assert all("/_history/" in t["reference"] for t in provenance["target"])
    agree = next(p for p in changes if p["activity"]["text"] == "agree")
    assert len(agree["signature"]) == 2


def test_a_search_posted_as_a_form_is_on_record_with_its_query(
    conformance_loaded: str, tmp_path: Path, issuer: TestIssuer
) -> None:
    # The parameters of POST _search travel in the body: the record still says what was asked.
    settings = Settings(
        hapi_url=conformance_loaded,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        data_dir=tmp_path,
        **issuer.settings(),
    )
    reader = f"ehr-posting-{uuid.uuid4().hex[:8]}"
    asked = f"{urls.ID_CONTRACT}|posted-{reader}"
    with TestClient(create_app(settings), raise_server_exceptions=False) as service:
        while service.get("/ready").status_code != 200:
            time.sleep(0.2)
        posted = service.post(
            "/fhir/CarePlan/_search",
            data={"identifier": asked},
            headers=issuer.headers("ehr", organization=UNIT, subject=reader),
        )
        assert posted.status_code == 200, posted.text
        _wait_for(conformance_loaded, f"agent-identifier={ISSUER}|{reader}", 1)

    [event] = _search(conformance_loaded, f"AuditEvent?agent-identifier={ISSUER}|{reader}")
    queries = [
        base64.b64decode(entity["query"]).decode("utf-8")
        for entity in event["entity"]
        if "query" in entity
    ]
    assert queries, event["entity"]
    assert any("identifier=" in q and f"posted-{reader}" in q for q in queries), queries
