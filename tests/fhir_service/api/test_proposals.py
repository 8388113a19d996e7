"""The patient's proposals against the real HAPI: asked in their own words on an agreed contract,
seen by the care unit as the patient's, taken into the next version or declined with a reason
the patient reads; the contract stays agreed meanwhile.
"""

from __future__ import annotations

from typing import Any

import httpx

from fhir_service.mapping import urls
from tests.fhir_service.api.parties import Story


def _proposal(contract: dict[str, Any], text: str) -> dict[str, Any]:
    return next(p for p in contract["proposals"] if p["text"] == text)


def test_the_patients_proposals_are_theirs_and_need_no_new_agreement(
    story: Story, conformance_loaded: str
) -> None:
    before = story.read()
    wish = "Att få ringa i stället för att komma på mottagningen."
    change = "Kan promenaden vara tre dagar i veckan i stället för varje dag?"

    asked = story.post("proposals", story.patient, None, {"kind": "wish", "text": wish})
    about = story.post(
        "proposals", story.patient, None, {"kind": "activity", "text": change, "about": "walk"}
    )

    assert asked.status_code == 200, asked.text
    assert about.status_code == 200, about.text
    seen = story.read()
    assert seen["status"] == "agreed"
    assert seen["agreements"] == before["agreements"]
    # Not taken into the contract by asking: the wishes and the walk are as agreed.
    assert seen["wishes"] == before["wishes"]
    assert seen["activities"] == before["activities"]
    assert {(p["kind"], p.get("about"), p["status"]) for p in seen["proposals"]} == {
        ("wish", None, "open"),
        ("activity", "walk", "open"),
    }
    # In HAPI: notes by the Patient, marked as the patient's proposals.
    careplan = httpx.get(
        f"{conformance_loaded}/CarePlan", params={"identifier": f"{urls.ID_CONTRACT}|{story.id}"}
    ).json()["entry"][0]["resource"]
    notes = [n for n in careplan["note"] if n["text"] in (wish, change)]
    assert len(notes) == 2
    for note in notes:
        assert note["authorReference"]["reference"] == careplan["subject"]["reference"]
        assert any(e["url"] == urls.EXT_PATIENT_PROPOSAL for e in note["extension"])


def test_the_unit_takes_one_into_the_next_version_and_declines_another_saying_why(
    story: Story,
) -> None:
    wish = "Att min dotter får vara med på samtalen."
    goal = "Kunna gå till affären själv igen."
    story.post("proposals", story.patient, None, {"kind": "wish", "text": wish})
    asked = story.post("proposals", story.patient, None, {"kind": "goal", "text": goal}).json()
    key_wish, key_goal = _proposal(asked, wish)["key"], _proposal(asked, goal)["key"]

    # Taken: the unit revises the contract to hold it, and says so.
    revised = story.post("revise", story.ehr, asked["version"]).json()
    changed = {**revised, "wishes": [*revised["wishes"], wish]}
    updated = story.client.put(
        f"/contracts/{story.id}",
        json=changed,
        headers={**story.ehr, "If-Match": f'W/"{revised["version"]}"'},
    )
    assert updated.status_code == 200, updated.text
    taken = story.post(f"proposals/{key_wish}/answer", story.ehr, None, {"decision": "taken"})
    reason = "Målet finns redan i planen som att handla med stöd."
    declined = story.post(
        f"proposals/{key_goal}/answer",
        story.ehr,
        None,
        {"decision": "declined", "reason": reason},
    )

    assert taken.status_code == 200, taken.text
    assert declined.status_code == 200, declined.text
    shown = story.client.get(f"/contracts/{story.id}", headers=story.patient).json()
    assert wish in shown["wishes"]
    assert _proposal(shown, wish)["status"] == "taken"
    refused = _proposal(shown, goal)
    assert (refused["key"], refused["status"], refused["reason"]) == (key_goal, "declined", reason)
    # Answered once.
    again = story.post(f"proposals/{key_wish}/answer", story.ehr, None, {"decision": "taken"})
    assert again.status_code == 409


def test_what_is_not_the_patients_to_propose_or_answer_is_refused(story: Story) -> None:
    before = story.read()

    by_unit = story.post("proposals", story.ehr, None, {"kind": "wish", "text": "Fler samtal."})
    unknown = story.post(
        "proposals", story.patient, None, {"kind": "activity", "text": "Byt.", "about": "nope"}
    )
    misplaced = story.post(
        "proposals", story.patient, None, {"kind": "wish", "text": "Mer tid.", "about": "walk"}
    )
    no_key = story.post("proposals", story.patient, None, {"kind": "time", "text": "Senare."})
    answered_by_patient = story.post(
        "proposals/whatever/answer", story.patient, None, {"decision": "taken"}
    )
    unreasoned = story.post("proposals/whatever/answer", story.ehr, None, {"decision": "declined"})
    missing = story.post("proposals/whatever/answer", story.ehr, None, {"decision": "taken"})

    assert by_unit.status_code == 403
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["location"] == "$.about"
    assert misplaced.status_code == 422
    assert no_key.status_code == 422
    assert answered_by_patient.status_code == 403
    assert unreasoned.status_code == 422
    assert unreasoned.json()["errors"][0]["location"] == "$.reason"
    assert missing.status_code == 404
    assert story.read() == before
