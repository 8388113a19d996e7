"""Progress reports against the real HAPI: the patient says how their own activities go, the
contract stays agreed and changes nowhere else, and anything else a patient token tries is
refused, on record.

The contract is agreed by both parties in their own name first; what HAPI holds and the audit
trail are read straight from HAPI, as an auditor would.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from fhir_service.mapping import urls
from tests.auth import ISSUER
from tests.fhir_service.api.parties import Story


def _activity(contract: dict[str, Any], key: str) -> dict[str, Any]:
    return next(a for a in contract["activities"] if a["key"] == key)


def test_a_patients_report_changes_only_that_activity_and_needs_no_new_agreement(
    story: Story, conformance_loaded: str
) -> None:
    before = story.read()
    note = "Gick runt sjön med min dotter, 40 minuter."

    reported = story.report(
        "walk", story.patient, status="in-progress", note=note, at="2026-12-04T17:30:00+01:00"
    )

    assert reported.status_code == 200, reported.text
    after = story.read()
    assert after["status"] == "agreed"
    assert after["version"] == before["version"] + 1
    walk = _activity(after, "walk")
    assert walk["status"] == "in-progress"
    assert walk["progress"] == {
        "reported_at": "2026-12-04T17:30:00+01:00",
        "by": "patient",
        "note": note,
    }
    # Nothing else of the contract changed; its agreement holds, as it was given.
    changed = {**after, "version": before["version"], "activities": before["activities"]}
    assert changed == before
    assert [a for a in after["activities"] if a["key"] != "walk"] == [
        a for a in before["activities"] if a["key"] != "walk"
    ]
    assert after["agreements"] == before["agreements"]
    # In HAPI: the activity's status and an Annotation by the Patient, when they said.
    careplan = httpx.get(
        f"{conformance_loaded}/CarePlan", params={"identifier": f"{urls.ID_CONTRACT}|{story.id}"}
    ).json()["entry"][0]["resource"]
    activity = next(a for a in careplan["activity"] if a.get("id") == "walk")
    assert activity["detail"]["status"] == "in-progress"
    (annotation,) = activity["progress"]
    assert annotation["text"] == note
    assert annotation["authorReference"]["reference"] == careplan["subject"]["reference"]

    # Reported done without a note: the status says it all.
    done = story.report("walk", story.patient, status="completed")
    assert done.status_code == 200, done.text
    assert _activity(done.json(), "walk")["progress"]["note"] is None
    assert _activity(story.read(), "walk")["status"] == "completed"


def test_a_patient_cannot_report_on_the_cares_activities_or_change_anything_else(
    story: Story, conformance_loaded: str
) -> None:
    before = story.read()

    theirs = story.report("sodium", story.patient, status="completed")
    written = story.client.put(
        f"/contracts/{story.id}",
        json=before,
        headers={**story.patient, "If-Match": f'W/"{before["version"]}"'},
    )
    revised = story.post("revise", story.patient, before["version"])
    unknown = story.report("no-such-activity", story.patient, status="completed")

    assert theirs.status_code == 403
    assert "their own activities" in theirs.json()["detail"]
    assert written.status_code == 403
    assert revised.status_code == 403
    assert unknown.status_code == 404
    assert story.read() == before
    # Each refusal is on record, as the patient's.
    deadline = time.monotonic() + 60
    while True:
        events = httpx.get(
            f"{conformance_loaded}/AuditEvent",
            params={"agent-identifier": f"{ISSUER}|{story.patient_subject}", "outcome": "4"},
        ).json()
        if len(events.get("entry", [])) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(events.get("entry", [])) >= 3


def test_a_bad_report_is_refused_with_every_problem_at_once(story: Story) -> None:
    before = story.read()

    refused = story.report(
        "walk", story.patient, status="cancelled", note="x" * 501, at="2099-01-01T00:00:00Z"
    )

    assert refused.status_code == 422
    locations = {e["location"] for e in refused.json()["errors"]}
    assert {"$.note"} <= locations
    assert story.read() == before
    # Within the body's own rules, the service's: a status the care decides, a time to come.
    wrong = story.report("walk", story.patient, status="cancelled", at="2099-01-01T00:00:00Z")
    assert wrong.status_code == 422
    assert {e["location"] for e in wrong.json()["errors"]} == {"$.status", "$.at"}
    assert story.read() == before


def test_a_stale_version_is_refused_and_no_version_reports_on_the_current_one(
    story: Story,
) -> None:
    version = story.read()["version"]
    assert story.report("walk", story.patient, status="in-progress").status_code == 200

    stale = story.report("sleep-diary", story.patient, version, status="in-progress")
    current = story.report("sleep-diary", story.patient, status="in-progress")

    assert stale.status_code == 409
    assert current.status_code == 200
    assert _activity(story.read(), "sleep-diary")["status"] == "in-progress"


def test_the_care_unit_reports_on_its_own_activities_and_a_draft_takes_no_reports(
    story: Story,
) -> None:
    by_unit = story.report("sodium", story.ehr, status="completed", note="Provsvar normalt.")
    assert by_unit.status_code == 200, by_unit.text
    assert _activity(by_unit.json(), "sodium")["progress"]["by"] == "care-unit"

    revised = story.post("revise", story.ehr, by_unit.json()["version"]).json()
    # Under revision the plan is still carried out; a new draft is not.
    assert revised["status"] == "revised"
    assert story.report("walk", story.patient, status="on-hold").status_code == 200
    draft = {**story.data, "id": f"{story.id}-next"}
    assert story.client.post("/contracts", json=draft, headers=story.ehr).status_code == 201
    not_in_force = story.client.post(
        f"/contracts/{draft['id']}/activities/sodium/progress",
        json={"status": "completed"},
        headers=story.ehr,
    )
    assert not_in_force.status_code == 409
    assert "not being carried out" in not_in_force.json()["detail"]
