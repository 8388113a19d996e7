"""Appointment/$find and $book against the real HAPI: the booking facade in IHE Scheduling's
shapes, on the same rules and with the same guarantee of no double booking."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.booking import UNIT, contract_with_times, far_hours, publish
from tests.support import load_data

HSA = "urn:oid:1.2.752.29.4.19|SE2321000065-1254"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _book(service: TestClient, headers: dict[str, str], proposed: Any, agreed: str) -> Any:
    chosen = {
        **proposed,
        "identifier": [{"system": urls.ID_AGREED_TIME, "value": agreed}],
    }
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment", "resource": chosen}],
    }
    return service.post(
        "/fhir/Appointment/$book", json=parameters, headers={**headers, **FHIR_JSON}
    )


def test_a_platform_finds_and_books_through_fhir_and_a_taken_slot_is_a_conflict(
    service: TestClient, issuer: TestIssuer
) -> None:
    clinic = issuer.headers("ehr", organization=UNIT)
    platform = issuer.headers("booking")
    hours = far_hours()
    starts = [next(hours) for _ in range(2)]
    slots = publish(service, clinic, starts)
    first, second = (contract_with_times(service, clinic) for _ in range(2))

    found = service.get(
        "/fhir/Appointment/$find",
        params={
            "start": starts[0].isoformat(),
            "end": (starts[-1] + timedelta(minutes=1)).isoformat(),
            "organization": HSA,
            "visit-type": f"{urls.CS_TIME_TYPE}|nurse-visit",
        },
        headers=platform,
    )
    proposed = [e["resource"] for e in found.json()["entry"]]
    booked = _book(service, platform, proposed[0], f"{first.id}/nurse-0")
    taken = _book(service, platform, proposed[0], f"{second.id}/nurse-0")
    unnamed = service.post(
        "/fhir/Appointment/$book", json=proposed[1], headers={**platform, **FHIR_JSON}
    )
    not_online = service.get(
        "/fhir/Appointment/$find",
        params={
            "start": starts[0].isoformat(),
            "end": starts[-1].isoformat(),
            "organization": HSA,
            "visit-type": "psychiatrist-followup",
        },
        headers=platform,
    )

    assert found.status_code == 200, found.text
    assert found.json()["type"] == "searchset"
    assert [p["status"] for p in proposed] == ["proposed", "proposed"]
    assert [p["slot"][0]["reference"] for p in proposed] == [
        f"http://testserver/fhir/Slot/{s}" for s in slots
    ]
    assert booked.status_code == 200, booked.text
    appointment = booked.json()["entry"][0]["resource"]
    assert appointment["status"] == "booked"
    assert appointment["slot"] == [{"reference": f"Slot/{slots[0]}"}]
    assert booked.json()["entry"][0]["fullUrl"].startswith("http://testserver/fhir/Appointment/")
    assert taken.status_code == 409
    assert taken.json()["resourceType"] == "OperationOutcome"
    assert unnamed.status_code == 422
    assert not_online.status_code == 404
    read = service.get(f"/contracts/{second.id}", headers=clinic).json()
    assert read["agreed_times"][0]["status"] == "proposed"


def test_the_capability_statement_names_find_hold_book_and_release(service: TestClient) -> None:
    statement = service.get("/fhir/metadata").json()
    appointment = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Appointment")

    assert {o["name"] for o in appointment["operation"]} == {"find", "hold", "book", "release"}


def test_a_time_withheld_from_a_patient_is_neither_judged_nor_booked_through_fhir(
    service: TestClient, issuer: TestIssuer
) -> None:
    clinic = issuer.headers("ehr", organization=UNIT)
    marker = f"walled-{uuid.uuid4().hex}"
    contract = contract_with_times(service, clinic)
    read = service.get(f"/contracts/{contract.id}", headers=clinic).json()
    read["agreed_times"][0]["confidentiality"] = "very-restricted"
    read["agreed_times"][0]["description"] = f"{marker} Besök som bara vårdenheten ser"
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
    start = next(far_hours())
    publish(service, clinic, [start])
    patient = issuer.headers("patient", patient=f"personnummer|{contract.patient.identifier.value}")
    agreed_time = f"{contract.id}/nurse-0"
    query = {
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=1)).isoformat(),
        "organization": HSA,
        "visit-type": f"{urls.CS_TIME_TYPE}|nurse-visit",
    }
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    identifier = [("identifier", f"{urls.ID_AGREED_TIME}|{agreed_time}")]
    before = service.portal.call(hapi.search, "Appointment", identifier).matches()  # type: ignore[union-attr]

    for_clinic = service.get(
        "/fhir/Appointment/$find", params={**query, "agreed-time": agreed_time}, headers=clinic
    )
    for_patient = service.get(
        "/fhir/Appointment/$find", params={**query, "agreed-time": agreed_time}, headers=patient
    )
    proposed = service.get("/fhir/Appointment/$find", params=query, headers=patient)
    booked = _book(service, patient, proposed.json()["entry"][0]["resource"], agreed_time)

    assert for_clinic.status_code == 200, for_clinic.text
    assert for_patient.status_code == 404
    assert proposed.status_code == 200, proposed.text
    assert booked.status_code == 404
    assert booked.json()["resourceType"] == "OperationOutcome"
    assert not any(marker in a.text for a in (for_patient, proposed, booked))
    after = service.portal.call(hapi.search, "Appointment", identifier).matches()  # type: ignore[union-attr]
    assert [a["meta"]["versionId"] for a in after] == [b["meta"]["versionId"] for b in before]
    assert after[0]["status"] == "proposed"


def test_find_without_its_parameters_names_each_one_missing(
    service: TestClient, issuer: TestIssuer
) -> None:
    booking = service.get("/fhir/Appointment/$find", headers=issuer.headers("booking"))

    said = [i["diagnostics"] for i in booking.json()["issue"]]
    assert booking.status_code == 422
    for parameter in ("start", "end", "organization", "visit-type"):
        assert any(d.startswith(f"query.{parameter}:") for d in said), said


def test_find_by_post_takes_parameters_and_follows_to_the_slot(
    service: TestClient, issuer: TestIssuer
) -> None:
    clinic = issuer.headers("ehr", organization=UNIT)
    platform = issuer.headers("booking")
    hours = far_hours()
    start = next(hours)
    [slot] = publish(service, clinic, [start])
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": start.isoformat()},
            {"name": "end", "valueDateTime": (start + timedelta(minutes=1)).isoformat()},
            {"name": "organization", "valueString": HSA},
            {"name": "visit-type", "valueString": f"{urls.CS_TIME_TYPE}|nurse-visit"},
            {"name": "_count", "valueInteger": 5},
        ],
    }

    found = service.post(
        "/fhir/Appointment/$find", json=parameters, headers={**platform, **FHIR_JSON}
    )
    incomplete = service.post(
        "/fhir/Appointment/$find",
        json={"resourceType": "Parameters", "parameter": [{"name": "start", "valueString": "x"}]},
        headers={**platform, **FHIR_JSON},
    )

    assert found.status_code == 200, found.text
    [proposed] = [e["resource"] for e in found.json()["entry"]]
    reference = proposed["slot"][0]["reference"]
    assert reference == f"http://testserver/fhir/Slot/{slot}"
    followed = service.get(reference.removeprefix("http://testserver"), headers=platform)
    assert followed.status_code == 200, followed.text
    assert followed.json()["resourceType"] == "Slot"
    assert incomplete.status_code == 400
    places = {i["expression"][0] for i in incomplete.json()["issue"]}
    assert places == {"start", "end", "organization", "visit-type"}
