"""The booking facade against the real HAPI: publishing, finding, booking, cancelling and
rebooking agreed times, never a slot twice, and the clinic's rules for patients.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_service.contract import Contract
from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.booking import UNIT, contract_with_times, far_hours, publish
from tests.service_app import ready_app
from tests.support import load_data

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
NURSE = f"/booking/care-units/{UNIT}/time-types/nurse-visit/slots"


@pytest.fixture(scope="module")
def service(
    conformance_loaded: str, tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[TestClient]:
    with ready_app(conformance_loaded, tmp_path_factory.mktemp("booking"), issuer) as client:
        yield client


@pytest.fixture
def clinic(issuer: TestIssuer) -> dict[str, str]:
    return issuer.headers("ehr", organization=UNIT)


@pytest.fixture
def platform(issuer: TestIssuer) -> dict[str, str]:
    return issuer.headers("booking")


def _patient(issuer: TestIssuer, contract: Contract) -> dict[str, str]:
    return issuer.headers("patient", patient=f"personnummer|{contract.patient.identifier.value}")


def _book(
    service: TestClient, headers: dict[str, str], contract_id: str, key: str, slot: str
) -> Any:
    return service.post(
        f"/booking/contracts/{contract_id}/times/{key}/book", json={"slot": slot}, headers=headers
    )


def _slot(service: TestClient, clinic: dict[str, str], slot_id: str) -> dict[str, Any]:
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    return dict(service.portal.call(hapi.read, "Slot", slot_id))  # type: ignore[union-attr]


def test_publishing_the_same_times_again_changes_nothing(
    service: TestClient, clinic: dict[str, str]
) -> None:
    hours = far_hours()
    times = [next(hours) for _ in range(3)]
    body = {
        "times": [
            {"start": t.isoformat(), "end": (t + timedelta(minutes=30)).isoformat()} for t in times
        ]
    }
    monday = (times[0] + timedelta(days=14 - times[0].weekday())).date()
    template = {
        "template": {
            "from": monday.isoformat(),
            "to": (monday + timedelta(days=6)).isoformat(),
            "openings": [{"weekday": 1, "start": "13:00", "end": "14:15"}],
        }
    }

    first = service.post(NURSE, json=body, headers=clinic)
    again = service.post(NURSE, json=body, headers=clinic)
    weekly = service.post(NURSE, json=template, headers=clinic)
    weekly_again = service.post(NURSE, json=template, headers=clinic)

    assert first.json() == {"created": 3, "existing": 0}
    assert again.json() == {"created": 0, "existing": 3}
    # 13:00, 13:30; 14:00 to 14:30 does not fit before 14:15.
    assert weekly.json() == {"created": 2, "existing": 0}
    assert weekly_again.json() == {"created": 0, "existing": 2}


def test_fifty_concurrent_bookings_of_five_slots_make_five_bookings(
    service: TestClient, clinic: dict[str, str], platform: dict[str, str]
) -> None:
    hours = far_hours()
    slots = publish(service, clinic, [next(hours) for _ in range(5)])
    contracts = [contract_with_times(service, clinic, times=5) for _ in range(10)]
    attempts = [
        (contracts[n // 5].id, f"nurse-{n % 5}", slots[(n + n // 5) % 5]) for n in range(50)
    ]

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda a: _book(service, platform, *a), attempts))

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 5, 409: 45}, [
        a.text for a in answers if a.status_code not in (200, 409)
    ]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.headers["content-type"].startswith("application/problem+json")
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    booked = service.portal.call(  # type: ignore[union-attr]
        hapi.search,
        "Appointment",
        [("slot", ",".join(f"Slot/{s}" for s in slots)), ("status", "booked")],
    )
    assert len(booked.matches()) == 5
    assert {_slot(service, clinic, s)["status"] for s in slots} == {"busy"}
    winners = {a.json()["slot"] for a in answers if a.status_code == 200}
    assert winners == set(slots)


def test_concurrent_rebookings_onto_one_slot_move_one_time(
    service: TestClient, clinic: dict[str, str], platform: dict[str, str]
) -> None:
    hours = far_hours()
    slots = publish(service, clinic, [next(hours) for _ in range(6)])
    contracts = [contract_with_times(service, clinic) for _ in range(5)]
    for contract, slot in zip(contracts, slots, strict=False):
        assert _book(service, platform, contract.id, "nurse-0", slot).status_code == 200
    target = slots[5]

    def rebook(contract: Contract) -> Any:
        return service.post(
            f"/booking/contracts/{contract.id}/times/nurse-0/rebook",
            json={"slot": target},
            headers=platform,
        )

    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(rebook, contracts))

    assert Counter(a.status_code for a in answers) == {200: 1, 409: 4}
    moved = next(i for i, a in enumerate(answers) if a.status_code == 200)
    statuses = [_slot(service, clinic, s)["status"] for s in slots]
    assert statuses == ["free" if i == moved else "busy" for i in range(5)] + ["busy"]
    read = service.get(f"/contracts/{contracts[moved].id}", headers=clinic).json()
    assert read["agreed_times"][0]["slot"] == target


def test_a_patient_books_cancels_and_rebooks_their_own_agreed_contract_within_the_rules(
    service: TestClient, clinic: dict[str, str], issuer: TestIssuer
) -> None:
    hours = far_hours()
    soon = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3)
    slots = publish(service, clinic, [next(hours) for _ in range(3)])
    [soon_slot] = publish(service, clinic, [soon + timedelta(minutes=random.randrange(60))])
    contract = contract_with_times(service, clinic, times=2, agreed=True)
    other = contract_with_times(service, clinic)
    patient = _patient(issuer, contract)
    base = f"/booking/contracts/{contract.id}/times"

    booked = _book(service, patient, contract.id, "nurse-0", slots[0])
    not_online = _book(service, patient, contract.id, "psychiatrist", slots[1])
    someone_elses = _book(service, patient, other.id, "nurse-0", slots[1])
    rebooked = service.post(f"{base}/nurse-0/rebook", json={"slot": slots[1]}, headers=patient)
    cancelled = service.post(f"{base}/nurse-0/cancel", json={"reason": "Sjuk"}, headers=patient)
    by_clinic = _book(service, clinic, contract.id, "nurse-1", soon_slot)
    too_late = service.post(f"{base}/nurse-1/cancel", json={"reason": "Sjuk"}, headers=patient)
    listed = service.get(
        f"/booking/patients/personnummer|{contract.patient.identifier.value}/times",
        headers=patient,
    )

    assert booked.status_code == 200, booked.text
    assert booked.json()["status"] == "booked"
    assert booked.json()["slot"] == slots[0]
    assert not_online.status_code in (403, 422)
    assert someone_elses.status_code == 404
    assert rebooked.status_code == 200, rebooked.text
    assert rebooked.json()["slot"] == slots[1]
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancellation_reason"] == "Sjuk"
    assert by_clinic.status_code == 200, by_clinic.text
    assert too_late.status_code == 409
    assert "24 hours" in too_late.json()["detail"]
    assert [_slot(service, clinic, s)["status"] for s in slots[:2]] == ["free", "free"]
    assert [t["time"]["key"] for t in listed.json()["times"]] == ["nurse-1"]
    # The agreed contract stays agreed and readable: a booking does not change what was agreed.
    read = service.get(f"/contracts/{contract.id}", headers=clinic).json()
    assert read["status"] == "agreed"
    assert read["version"] == 2
    assert {t["key"]: t["status"] for t in read["agreed_times"]} == {
        "nurse-0": "cancelled",
        "nurse-1": "booked",
        "psychiatrist": "proposed",
    }


def test_patients_see_only_times_patients_may_book(
    service: TestClient, clinic: dict[str, str], platform: dict[str, str]
) -> None:
    asked = {"careUnit": UNIT, "timeType": "psychiatrist-followup"}

    by_platform = service.get("/booking/slots", params=asked, headers=platform)
    by_clinic = service.get("/booking/slots", params=asked, headers=clinic)
    in_norwegian = service.get(
        "/booking/slots",
        params={"careUnit": UNIT, "timeType": "nurse-visit"},
        headers={**platform, "Accept-Language": "nb"},
    )

    assert by_platform.status_code == 404
    assert by_clinic.status_code == 200
    assert in_norwegian.headers["content-language"] == "nb"
    assert all(s["name"] == "Time hos sykepleier" for s in in_norwegian.json()["slots"])


def test_a_unit_publishes_only_its_own_times(
    service: TestClient, issuer: TestIssuer, platform: dict[str, str]
) -> None:
    other_unit = issuer.headers("ehr", organization="hsa-id|SE2321000065-1003")
    body = {"times": [{"start": "2031-01-01T09:00:00Z", "end": "2031-01-01T09:30:00Z"}]}

    assert service.post(NURSE, json=body, headers=other_unit).status_code == 403
    assert service.post(NURSE, json=body, headers=platform).status_code == 403
    assert (
        service.post(
            f"/booking/care-units/{UNIT}/time-types/no-such-type/slots",
            json=body,
            headers=issuer.headers("ehr", organization=UNIT),
        ).status_code
        == 404
    )


def _waiting_since(service: TestClient, clinic: dict[str, str], days: int | None) -> Contract:
    """A draft whose patient waits for a specialist visit since ``days`` ago (None: no case)."""
    contract = contract_with_times(service, clinic)
    if days is None:
        return contract
    since = datetime.now(UTC) - timedelta(days=days)
    case = {"jurisdiction": "SE", "step": "specialist-visit", "since": since.isoformat()}
    body = contract.model_dump(mode="json")
    body["care_guarantee"] = case
    answer = service.put(
        f"/contracts/{contract.id}", json=body, headers={**clinic, "If-Match": 'W/"1"'}
    )
    assert answer.status_code == 200, answer.text
    return Contract.model_validate(answer.json())


def test_a_booking_past_the_care_guarantee_is_flagged_recorded_and_listed(
    service: TestClient, clinic: dict[str, str]
) -> None:
    # Ninety days from the referral: a slot in two days is in time for a referral ten days
    # back and late for one a hundred days back; a slot years away is late for both.
    soon = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(
        days=2, minutes=random.randrange(600)
    )
    far = next(far_hours())
    slots = publish(service, clinic, [soon, far], "psychiatrist-followup")
    waited_long = _waiting_since(service, clinic, 100)
    waited_briefly = _waiting_since(service, clinic, 10)
    no_case = _waiting_since(service, clinic, None)

    offered = service.get(
        "/booking/slots",
        params={
            "careUnit": UNIT,
            "timeType": "psychiatrist-followup",
            "from": soon.isoformat(),
            "to": (far + timedelta(minutes=1)).isoformat(),
            "contract": waited_briefly.id,
            "agreedTime": "psychiatrist",
        },
        headers=clinic,
    )
    in_time = _book(service, clinic, waited_briefly.id, "psychiatrist", slots[0])
    late = _book(service, clinic, waited_long.id, "psychiatrist", slots[1])
    unjudged = service.get(
        "/booking/slots",
        params={"careUnit": UNIT, "timeType": "psychiatrist-followup", "from": soon.isoformat()},
        headers=clinic,
    )
    listed = service.get(
        "/booking/care-guarantee/breaches", params={"careUnit": UNIT}, headers=clinic
    )

    verdicts = {s["id"]: s["care_guarantee"] for s in offered.json()["slots"]}
    assert verdicts[slots[0]]["late"] is False
    assert verdicts[slots[1]]["late"] is True
    assert all(s["care_guarantee"] is None for s in unjudged.json()["slots"])
    assert in_time.status_code == 200, in_time.text
    assert in_time.json()["care_guarantee"]["late"] is False
    assert late.status_code == 200, late.text
    assert late.json()["care_guarantee"]["late"] is True
    assert late.json()["care_guarantee"]["days_over"] > 1000
    stored = service.get(f"/contracts/{waited_long.id}", headers=clinic).json()
    recorded = next(t for t in stored["agreed_times"] if t["key"] == "psychiatrist")
    assert recorded["care_guarantee"] == late.json()["care_guarantee"]
    breaking = {(b["contract_id"], b["time"]["key"]) for b in listed.json()["breaches"]}
    assert (waited_long.id, "psychiatrist") in breaking
    assert not any(c in (waited_briefly.id, no_case.id) for c, _ in breaking)


def test_a_contract_naming_a_time_type_its_unit_lacks_is_refused(
    service: TestClient, clinic: dict[str, str]
) -> None:
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"bk-{uuid.uuid4().hex[:16]}"
    data["agreed_times"][0]["time_type"] = "x-ray"
    data["activities"][0]["category"] = "yoga"
    data["care_guarantee"] = {
        "jurisdiction": "SE",
        "step": "no-such-step",
        "since": "2031-01-01T00:00:00+01:00",
    }

    refused = service.post("/contracts", json=data, headers=clinic)

    assert refused.status_code == 422
    assert "x-ray" in refused.text
    assert "no-such-step" in refused.text
    assert "yoga" in refused.text
    assert service.get(f"/contracts/{data['id']}", headers=clinic).status_code == 404


def test_a_time_is_booked_only_in_its_own_units_published_slots(
    service: TestClient, clinic: dict[str, str], issuer: TestIssuer, platform: dict[str, str]
) -> None:
    knee_unit = "hsa-id|SE2321000065-1003"
    knee = issuer.headers("ehr", organization=knee_unit)
    start = next(far_hours())
    path = f"/booking/care-units/{knee_unit}/time-types/followup-visit/slots"
    times = [{"start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}]
    assert service.post(path, json={"times": times}, headers=knee).status_code == 200
    other_units = service.get(
        "/booking/slots",
        params={"careUnit": knee_unit, "timeType": "followup-visit", "from": start.isoformat()},
        headers=knee,
    ).json()["slots"][0]["id"]
    # A Slot of the right type written straight into HAPI, not published by the unit.
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    stray = service.portal.call(  # type: ignore[union-attr]
        hapi.create,
        {
            "resourceType": "Slot",
            "schedule": {"display": "elsewhere"},
            "status": "free",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "serviceType": [{"coding": [{"system": urls.CS_TIME_TYPE, "code": "nurse-visit"}]}],
        },
    )
    contract = contract_with_times(service, clinic)

    into_other_unit = _book(service, platform, contract.id, "nurse-0", other_units)
    into_stray = _book(service, platform, contract.id, "nurse-0", stray["id"])

    assert into_other_unit.status_code == 422
    assert into_stray.status_code == 422
    assert _slot(service, clinic, stray["id"])["status"] == "free"


def test_a_booking_is_in_the_audit_trail_and_its_provenance_names_the_contract(
    service: TestClient, clinic: dict[str, str], platform: dict[str, str], issuer: TestIssuer
) -> None:
    [slot] = publish(service, clinic, [next(far_hours())])
    contract = contract_with_times(service, clinic)
    auditor = issuer.headers("auditor")

    assert _book(service, platform, contract.id, "nurse-0", slot).status_code == 200
    query = {"entity-identifier": f"{urls.ID_CONTRACT}|{contract.id}", "subtype": "book"}
    deadline = time.monotonic() + 60
    events: list[dict[str, Any]] = []
    while not events and time.monotonic() < deadline:
        found = service.get("/fhir/AuditEvent", params=query, headers=auditor)
        events = [e["resource"] for e in found.json().get("entry", [])]
        time.sleep(0.5)
    changes = service.get(
        "/fhir/Provenance",
        params={"target-identifier": f"{urls.ID_CONTRACT}|{contract.id}"},
        headers=auditor,
    ).json()

    assert len(events) == 1
    assert events[0]["outcome"] == "0"
    activities = [e["resource"]["activity"]["text"] for e in changes.get("entry", [])]
    assert "book" in activities
    booking = next(
        e["resource"] for e in changes["entry"] if e["resource"]["activity"]["text"] == "book"
    )
    # HAPI names the versions the transaction wrote: the taken Slot's and the Appointment's.
    targets = {str(t.get("reference")).split("/_history/")[0] for t in booking["target"]}
    assert f"Slot/{slot}" in targets
    assert any(t.startswith("Appointment/") for t in targets)


def test_a_contract_edit_cannot_move_or_drop_a_time_booked_in_a_slot(
    service: TestClient, clinic: dict[str, str], platform: dict[str, str]
) -> None:
    [slot] = publish(service, clinic, [next(far_hours())])
    contract = contract_with_times(service, clinic, times=2)
    assert _book(service, platform, contract.id, "nurse-0", slot).status_code == 200
    read = service.get(f"/contracts/{contract.id}", headers=clinic).json()
    moved = json.loads(json.dumps(read))
    booked = next(t for t in moved["agreed_times"] if t["key"] == "nurse-0")
    booked["start"], booked["end"] = booked["end"], "2040-01-01T10:00:00+01:00"
    dropped = {**read, "agreed_times": [t for t in read["agreed_times"] if t["key"] != "nurse-0"]}
    retitled = {**read, "title": "Still editable around the booking"}
    headers = {**clinic, "If-Match": f'W/"{read["version"]}"'}

    moving = service.put(f"/contracts/{contract.id}", json=moved, headers=headers)
    dropping = service.put(f"/contracts/{contract.id}", json=dropped, headers=headers)
    retitling = service.put(f"/contracts/{contract.id}", json=retitled, headers=headers)

    assert moving.status_code == 409
    assert "nurse-0" in moving.json()["detail"]
    assert dropping.status_code == 409
    assert retitling.status_code == 200, retitling.text
    kept = next(t for t in retitling.json()["agreed_times"] if t["key"] == "nurse-0")
    assert (kept["status"], kept["slot"]) == ("booked", slot)
    assert _slot(service, clinic, slot)["status"] == "busy"


def _walled(service: TestClient, clinic: dict[str, str], marker: str) -> Contract:
    """An agreed contract whose nurse-1 visit is very restricted (its description starts with
    ``marker``) and whose first goal is restricted; nurse-0 is open to the patient."""
    contract = contract_with_times(service, clinic, times=2)
    read = service.get(f"/contracts/{contract.id}", headers=clinic).json()
    walled = next(t for t in read["agreed_times"] if t["key"] == "nurse-1")
    walled["confidentiality"] = "very-restricted"
    walled["description"] = f"{marker} Besök som bara vårdenheten ser"
    read["goals"][0]["confidentiality"] = "restricted"
    changed = service.put(
        f"/contracts/{contract.id}", json=read, headers={**clinic, "If-Match": 'W/"1"'}
    )
    assert changed.status_code == 200, changed.text
    agreed = service.post(
        f"/contracts/{contract.id}/agree",
        json=load_data("booking/agreements.json"),
        headers={**clinic, "If-Match": 'W/"2"'},
    )
    assert agreed.status_code == 200, agreed.text
    return Contract.model_validate(agreed.json())


def test_a_patient_is_not_shown_a_very_restricted_booked_time_that_the_clinician_sees(
    service: TestClient, clinic: dict[str, str], issuer: TestIssuer
) -> None:
    marker = f"walled-{uuid.uuid4().hex}"
    contract = _walled(service, clinic, marker)
    hours = far_hours()
    slots = publish(service, clinic, [next(hours) for _ in range(2)])
    for key, slot in zip(("nurse-0", "nurse-1"), slots, strict=True):
        assert _book(service, clinic, contract.id, key, slot).status_code == 200
    path = f"/booking/patients/personnummer|{contract.patient.identifier.value}/times"

    by_patient = service.get(path, headers=_patient(issuer, contract))
    by_clinician = service.get(path, headers=issuer.headers("clinician", organization=UNIT))

    assert by_patient.status_code == 200, by_patient.text
    assert [t["time"]["key"] for t in by_patient.json()["times"]] == ["nurse-0"]
    assert marker not in by_patient.text
    assert "nurse-1" not in by_patient.text
    assert "restricted" not in by_patient.text
    assert by_clinician.status_code == 200, by_clinician.text
    assert [t["time"]["key"] for t in by_clinician.json()["times"]] == ["nurse-0", "nurse-1"]
    assert marker in by_clinician.text


def test_a_time_withheld_from_a_patient_is_to_them_as_a_time_that_does_not_exist(
    service: TestClient, clinic: dict[str, str], issuer: TestIssuer
) -> None:
    marker = f"walled-{uuid.uuid4().hex}"
    contract = _walled(service, clinic, marker)
    draft = contract_with_times(service, clinic)
    hours = far_hours()
    slots = publish(service, clinic, [next(hours) for _ in range(3)])
    assert _book(service, clinic, contract.id, "nurse-1", slots[0]).status_code == 200
    patient = _patient(issuer, contract)
    base = f"/booking/contracts/{contract.id}/times"
    before = service.get(f"/contracts/{contract.id}", headers=clinic).json()["agreed_times"]

    attempts = [
        service.post(f"{base}/nurse-1/cancel", json={"reason": "Sjuk"}, headers=patient),
        service.post(f"{base}/nurse-1/rebook", json={"slot": slots[1]}, headers=patient),
        _book(service, patient, contract.id, "nurse-1", slots[1]),
    ]
    missing = _book(service, patient, contract.id, "nurse-9", slots[1])
    judged = service.get(
        "/booking/slots",
        params={
            "careUnit": UNIT,
            "timeType": "nurse-visit",
            "contract": contract.id,
            "agreedTime": "nurse-1",
        },
        headers=patient,
    )
    of_a_draft = _book(service, _patient(issuer, draft), draft.id, "nurse-0", slots[2])
    a_draft_missing = _book(service, _patient(issuer, draft), f"{draft.id}x", "nurse-0", slots[2])

    assert [a.status_code for a in attempts] == [404, 404, 404], [a.text for a in attempts]
    # Withheld reads exactly as missing: the same status and the same words.
    said = missing.json()["detail"].replace("nurse-9", "nurse-1")
    assert [a.json()["detail"] for a in attempts] == [said] * 3
    assert judged.status_code == 404
    assert of_a_draft.status_code == 404
    assert of_a_draft.json()["detail"] == a_draft_missing.json()["detail"].replace(
        f"{draft.id}x", draft.id
    )
    assert not any(marker in a.text for a in [*attempts, judged])
    after = service.get(f"/contracts/{contract.id}", headers=clinic).json()["agreed_times"]
    assert after == before
    assert [_slot(service, clinic, s)["status"] for s in slots] == ["busy", "free", "free"]


def _searches(bundle: dict[str, Any]) -> list[str]:
    """What HAPI would search for to run ``bundle``: conditional creates and updates, and
    references by search (``Patient?identifier=...``)."""
    found = []
    for entry in bundle["entry"]:
        request = entry["request"]
        if "ifNoneExist" in request and not request["ifNoneExist"].startswith("_tag="):
            found.append(f"{request['url']}?{request['ifNoneExist']}")
        if "?" in request["url"]:
            found.append(request["url"])
        found += re.findall(r'"reference": "([^"]*\?[^"]*)"', json.dumps(entry))
    return found


def test_a_booking_and_a_revision_name_what_the_read_found_by_id_and_search_for_none(
    service: TestClient,
    clinic: dict[str, str],
    platform: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    slots = publish(service, clinic, [next(far_hours())])
    contract = contract_with_times(service, clinic, agreed=True)
    sent: list[dict[str, Any]] = []
    transaction = hapi.transaction

    async def recorded(bundle: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        sent.append(json.loads(json.dumps(bundle)))
        return await transaction(bundle, *args, **kwargs)

    monkeypatch.setattr(hapi, "transaction", recorded)
    appointments = f"/fhir/Appointment?patient.identifier={_system()}|{_number(contract)}"
    before = service.get(appointments, headers=clinic)

    booked = _book(service, platform, contract.id, "nurse-0", slots[0])
    version = service.get(f"/contracts/{contract.id}", headers=clinic).json()["version"]
    revised = service.post(
        f"/contracts/{contract.id}/revise", headers={**clinic, "If-Match": f'W/"{version}"'}
    )

    assert booked.status_code == 200, booked.text
    assert revised.status_code == 200, revised.text
    # The booking's and the revision's; the audit writer's AuditEvents go by meanwhile.
    writes = [b for b in sent if any(_kind(e) in ("Appointment", "CarePlan") for e in b["entry"])]
    assert [_searches(bundle) for bundle in writes] == [[], []]
    # The same records are named as before: none was made again.
    after = service.get(appointments, headers=clinic)
    assert _actors(after.json()) == _actors(before.json())


def _kind(entry: dict[str, Any]) -> str:
    return str(entry.get("resource", {}).get("resourceType"))


def _system() -> str:
    return "http://electronichealth.se/identifier/personnummer"


def _number(contract: Contract) -> str:
    return contract.patient.identifier.value


def _actors(bundle: dict[str, Any]) -> list[list[str]]:
    return sorted(
        sorted(p["actor"]["reference"] for p in e["resource"]["participant"])
        for e in bundle["entry"]
    )


def test_a_platform_holds_a_time_books_it_and_lets_another_go_through_the_json_routes(
    service: TestClient, clinic: dict[str, str], issuer: TestIssuer
) -> None:
    holder = issuer.headers("booking", subject="platform-json-a")
    other = issuer.headers("booking", subject="platform-json-b")
    hours = far_hours()
    first, second = publish(service, clinic, [next(hours), next(hours)])
    contract = contract_with_times(service, clinic, times=2)
    path = f"/booking/contracts/{contract.id}/times"

    held = service.post(f"{path}/nurse-0/hold", json={"slot": first}, headers=holder)
    taken = service.post(f"{path}/nurse-1/book", json={"slot": first}, headers=other)
    not_theirs = service.post(f"{path}/nurse-0/release", headers=other)
    booked = service.post(f"{path}/nurse-0/book", json={"slot": first}, headers=holder)
    again = service.post(f"{path}/nurse-1/hold", json={"slot": second}, headers=holder)
    released = service.post(f"{path}/nurse-1/release", headers=holder)

    assert held.status_code == 200, held.text
    assert held.json()["status"] == "pending"
    assert held.json()["hold"]["holder"].endswith("|platform-json-a")
    assert datetime.fromisoformat(held.json()["hold"]["until"]) > datetime.now(UTC)
    assert (taken.status_code, not_theirs.status_code) == (409, 409)
    assert booked.status_code == 200, booked.text
    assert booked.json()["status"] == "booked"
    assert "hold" not in booked.json()
    assert again.status_code == 200, again.text
    assert released.status_code == 200, released.text
    assert (released.json()["status"], released.json().get("slot")) == ("proposed", None)
    assert [_slot(service, clinic, s)["status"] for s in (first, second)] == ["busy", "free"]


def test_a_booking_is_kept_as_this_instances_own_write_for_the_change_feed(
    service: TestClient, clinic: dict[str, str], platform: dict[str, str]
) -> None:
    slot = publish(service, clinic, [next(far_hours())])[0]
    contract = contract_with_times(service, clinic)

    booked = _book(service, platform, contract.id, "nurse-0", slot)

    assert booked.status_code == 200, booked.text
    app_service = service.app.state.service  # type: ignore[attr-defined]
    appointment = service.portal.call(  # type: ignore[union-attr]
        app_service.hapi.search,
        "Appointment",
        [("identifier", f"{urls.ID_AGREED_TIME}|{contract.id}/nurse-0")],
    ).matches()[0]
    assert appointment["status"] == "booked"
    key = ("Appointment", appointment["id"], appointment["meta"]["versionId"])
    # The change feed routes the booking by this contract, without reading it back.
    written = app_service.store.own_writes.concerned_by(key)
    assert written is not None
    assert written.contract_id == contract.id
