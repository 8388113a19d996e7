"""Relatives with the patient's leave, against the real HAPI: a relative's token reaches the
patient's plan only while a leave the patient granted is in force (across grant, expiry and
revoke), never sees what the patient would not, reports only on the activities they own when
allowed, and everything they see or do is on record as theirs.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from fhir_service.mapping import urls
from tests.auth import ISSUER, TestIssuer
from tests.fhir_service.api.parties import Story
from tests.support import unique_personnummer


def _grant(
    story: Story, relative: str, *, days: float = 30, starts_in: float = 0, may_report: bool = False
) -> httpx.Response:
    start = datetime.now(UTC) + timedelta(days=starts_in)
    body = {
        "relative": {
            "identifier": {"kind": "personnummer", "value": relative},
            "name": {"family": "Lindqvist", "given": ["Eva"]},
        },
        "period": {"start": start.isoformat(), "end": (start + timedelta(days=days)).isoformat()},
        "may_report": may_report,
    }
    return story.client.post("/consents", json=body, headers=story.patient)


def _relative(
    issuer: TestIssuer, story: Story, grant: dict[str, Any], subject: str
) -> dict[str, str]:
    return issuer.headers(
        "relative",
        patient=story.patient_claim,
        subject=subject,
        fhirUser=grant["fhir_user"],
    )


def test_a_relative_reads_the_plan_only_while_the_leave_is_in_force(
    story: Story, issuer: TestIssuer, conformance_loaded: str
) -> None:
    relative = unique_personnummer()
    granted = _grant(story, relative)
    assert granted.status_code == 201, granted.text
    grant = granted.json()
    subject = f"relative-{uuid.uuid4().hex[:8]}"
    as_relative = _relative(issuer, story, grant, subject)

    read = story.client.get(f"/contracts/{story.id}", headers=as_relative)
    shown_to_patient = story.client.get(f"/contracts/{story.id}", headers=story.patient)
    assert read.status_code == 200, read.text
    # What the patient would be shown, and no more.
    assert read.json() == shown_to_patient.json()
    fhir = story.client.get(
        "/fhir/CarePlan",
        params={"identifier": f"{urls.ID_CONTRACT}|{story.id}"},
        headers=as_relative,
    )
    assert len(fhir.json()["entry"]) == 1
    # In HAPI, as the README's auditor query finds it: a Consent of the patient's naming the
    # relative's RelatedPerson, which carries the relative's personnummer.
    system = "http://electronichealth.se/identifier/personnummer"
    found = httpx.get(
        f"{conformance_loaded}/Consent",
        params={
            "patient.identifier": f"{system}|{story.patient_claim.split('|')[1]}",
            "_include": "Consent:actor",
        },
    ).json()["entry"]
    consent = next(e["resource"] for e in found if e["resource"]["id"] == grant["id"])
    person = next(e["resource"] for e in found if e["resource"]["resourceType"] == "RelatedPerson")
    assert consent["status"] == "active"
    assert consent["provision"]["actor"][0]["reference"]["reference"] == grant["fhir_user"]
    assert person["identifier"][0] == {"system": system, "value": relative}

    revoked = story.client.post(f"/consents/{grant['id']}/revoke", headers=story.patient)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["active"] is False

    after = story.client.get(f"/contracts/{story.id}", headers=as_relative)
    assert after.status_code == 403
    assert "leave" in after.json()["detail"]
    # What this relative saw, and was refused, is on record as theirs.
    deadline = time.monotonic() + 60
    while True:
        events = (
            httpx.get(
                f"{conformance_loaded}/AuditEvent",
                params={"agent-identifier": f"{ISSUER}|{subject}"},
            )
            .json()
            .get("entry", [])
        )
        if len(events) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    outcomes = sorted(e["resource"]["outcome"] for e in events)
    assert outcomes == ["0", "0", "4"]


def test_a_leave_not_yet_begun_or_run_out_reaches_nothing(story: Story, issuer: TestIssuer) -> None:
    relative = unique_personnummer()
    later = _grant(story, relative, starts_in=2).json()
    over = _grant(story, unique_personnummer(), starts_in=-10, days=5).json()

    for grant in (later, over):
        assert grant["active"] is False
        headers = _relative(issuer, story, grant, "relative-waiting")
        assert story.client.get(f"/contracts/{story.id}", headers=headers).status_code == 403
    listed = story.client.get("/consents", headers=story.patient).json()
    assert {g["id"] for g in listed} >= {later["id"], over["id"]}


def test_a_relative_reports_on_their_own_activities_only_when_allowed_and_does_nothing_else(
    story: Story, issuer: TestIssuer
) -> None:
    contract = story.read()
    # The contract names its relative by the personnummer the leave names.
    relative = contract["relatives"][0]["identifier"]["value"]
    key = next(a["key"] for a in contract["activities"] if a["owner"] == "relative")
    reading = _relative(issuer, story, _grant(story, relative).json(), "relative-reader")
    body = {"status": "in-progress", "note": "Jag följde med på besöket."}
    refused = story.report(key, reading, **body)
    # Leaves add up: once one lets them report, they may.
    reporting = _relative(
        issuer, story, _grant(story, relative, may_report=True).json(), "relative-reporter"
    )

    reported = story.report(key, reporting, **body)
    patients = story.report("walk", reporting, status="completed")
    signed = story.post("sign", reporting, contract["version"], {"decision": "agree"})
    proposed = story.post("proposals", reporting, None, {"kind": "wish", "text": "Mer tid."})
    granted = story.client.post("/consents", json={}, headers=reporting)

    assert refused.status_code == 403
    assert reported.status_code == 200, reported.text
    activity = next(a for a in reported.json()["activities"] if a["key"] == key)
    assert activity["progress"]["by"] == "relative"
    assert patients.status_code == 403
    assert signed.status_code == 403
    assert proposed.status_code == 403
    assert granted.status_code == 403


def test_another_patients_leave_is_not_the_patients_to_revoke(
    story: Story, issuer: TestIssuer
) -> None:
    grant = _grant(story, unique_personnummer()).json()
    stranger = issuer.headers("patient", patient=f"personnummer|{unique_personnummer()}")

    refused = story.client.post(f"/consents/{grant['id']}/revoke", headers=stranger)

    assert refused.status_code == 404
    listed = story.client.get("/consents", headers=story.patient).json()
    assert next(g for g in listed if g["id"] == grant["id"])["active"] is True


def test_a_relatives_absolute_fhir_user_is_a_relatives_all_the_same(
    story: Story, issuer: TestIssuer
) -> None:
    # Identity providers often write fhirUser as an absolute URL: the leave applies to it too,
    # and such a token is never taken for the patient's own.
    grant = _grant(story, unique_personnummer()).json()
    absolute = {**grant, "fhir_user": f"https://idp.example/fhir/{grant['fhir_user']}"}
    headers = _relative(issuer, story, absolute, "relative-absolute")
    contract = story.read()

    assert story.client.get(f"/contracts/{story.id}", headers=headers).status_code == 200
    signed = story.post("sign", headers, contract["version"], {"decision": "agree"})
    assert signed.status_code == 403
    assert "the patient's" in signed.json()["detail"]
    story.client.post(f"/consents/{grant['id']}/revoke", headers=story.patient)
    assert story.client.get(f"/contracts/{story.id}", headers=headers).status_code == 403


def test_a_consent_another_system_wrote_grants_nothing_and_breaks_nothing(
    story: Story, issuer: TestIssuer, conformance_loaded: str
) -> None:
    grant = _grant(story, unique_personnummer()).json()
    ours = httpx.get(f"{conformance_loaded}/Consent/{grant['id']}").json()
    # Another system's Consent for the same patient and relative, active but with no period.
    foreign = {k: v for k, v in ours.items() if k not in ("id", "meta")}
    del foreign["provision"]["period"]
    created = httpx.post(
        f"{conformance_loaded}/Consent",
        json=foreign,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 201, created.text
    assert story.client.post(f"/consents/{grant['id']}/revoke", headers=story.patient).is_success

    listed = story.client.get("/consents", headers=story.patient)
    relatives = story.client.get(
        f"/contracts/{story.id}", headers=_relative(issuer, story, grant, "relative-foreign")
    )
    revoked = story.client.post(f"/consents/{created.json()['id']}/revoke", headers=story.patient)

    assert listed.status_code == 200
    assert created.json()["id"] not in {g["id"] for g in listed.json()}
    assert relatives.status_code == 403
    assert revoked.status_code == 404
