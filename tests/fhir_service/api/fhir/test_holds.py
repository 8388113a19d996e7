"""Appointment/$hold, $book of a hold and $release against the real HAPI (IHE ITI-116 shape): a
held time is its holder's to book for a while, nobody else's, and then everyone's again, in HAPI
too, whichever instance made the hold and whether it still runs; driven by ``fhirpy`` too."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from fhirpy import SyncFHIRClient

from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.booking import UNIT, contract_with_times, far_hours, publish
from tests.service_app import ready_app
from tests.service_process import ServiceProcess

FHIR_JSON = {"Content-Type": "application/fhir+json"}
Client = TestClient | httpx.Client


def _operation(
    client: Client, operation: str, headers: dict[str, str], slot: str | None, agreed: str
) -> httpx.Response:
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "proposed",
        "identifier": [{"system": urls.ID_AGREED_TIME, "value": agreed}],
        "participant": [{"status": "needs-action"}],
    }
    if slot is not None:
        appointment["slot"] = [{"reference": f"Slot/{slot}"}]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment", "resource": appointment}],
    }
    return client.post(
        f"/fhir/Appointment/${operation}", json=parameters, headers={**headers, **FHIR_JSON}
    )


def _slot(client: Client, clinic: dict[str, str], slot: str) -> str:
    return str(client.get(f"/fhir/Slot/{slot}", headers=clinic).json()["status"])


def _time(client: Client, clinic: dict[str, str], contract_id: str, key: str) -> dict[str, Any]:
    read = client.get(f"/contracts/{contract_id}", headers=clinic).json()
    return dict(next(t for t in read["agreed_times"] if t["key"] == key))


def test_fifty_holds_of_five_slots_make_five_holds(service: TestClient, issuer: TestIssuer) -> None:
    clinic = issuer.headers("ehr", organization=UNIT)
    platform = issuer.headers("booking")
    hours = far_hours()
    slots = publish(service, clinic, [next(hours) for _ in range(5)])
    contracts = [contract_with_times(service, clinic, times=5) for _ in range(10)]
    attempts = [
        (slots[(n + n // 5) % 5], f"{contracts[n // 5].id}/nurse-{n % 5}") for n in range(50)
    ]

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(
            pool.map(lambda a: _operation(service, "hold", platform, a[0], a[1]), attempts)
        )

    assert Counter(a.status_code for a in answers) == {200: 5, 409: 45}, [
        a.text for a in answers if a.status_code not in (200, 409)
    ]
    held = [a.json()["entry"][0]["resource"] for a in answers if a.status_code == 200]
    assert {h["status"] for h in held} == {"pending"}
    assert sorted(h["slot"][0]["reference"] for h in held) == sorted(f"Slot/{s}" for s in slots)
    assert {_slot(service, clinic, s) for s in slots} == {"busy-tentative"}
    hold = next(e for e in held[0]["extension"] if e["url"] == urls.EXT_APPOINTMENT_HOLD)
    assert {p["url"] for p in hold["extension"]} == {"until", "holder"}


def test_a_hold_is_its_holders_to_book_and_no_one_elses_then_released_it_is_free(
    service: TestClient, issuer: TestIssuer
) -> None:
    clinic = issuer.headers("ehr", organization=UNIT)
    holder = issuer.headers("booking", subject="platform-a")
    other = issuer.headers("booking", subject="platform-b")
    hours = far_hours()
    first, second = publish(service, clinic, [next(hours), next(hours)])
    mine, theirs = contract_with_times(service, clinic), contract_with_times(service, clinic)

    held = _operation(service, "hold", holder, first, f"{mine.id}/nurse-0")
    held_too = _operation(service, "hold", other, first, f"{theirs.id}/nurse-0")
    booked_over = _operation(service, "book", other, first, f"{theirs.id}/nurse-0")
    booked_for_them = _operation(service, "book", other, first, f"{mine.id}/nurse-0")
    released_for_them = _operation(service, "release", other, None, f"{mine.id}/nurse-0")

    assert held.status_code == 200, held.text
    assert [r.status_code for r in (held_too, booked_over, booked_for_them)] == [409] * 3
    assert released_for_them.status_code == 409
    assert _time(service, clinic, mine.id, "nurse-0")["status"] == "pending"

    booked = _operation(service, "book", holder, first, f"{mine.id}/nurse-0")

    assert booked.status_code == 200, booked.text
    appointment = booked.json()["entry"][0]["resource"]
    assert appointment["status"] == "booked"
    assert all(e["url"] != urls.EXT_APPOINTMENT_HOLD for e in appointment.get("extension", []))
    assert _slot(service, clinic, first) == "busy"
    assert "hold" not in _time(service, clinic, mine.id, "nurse-0")

    # A hold let go of: the time proposed again, the Slot free for anyone.
    again = _operation(service, "hold", holder, second, f"{theirs.id}/nurse-0")
    assert again.status_code == 200, again.text
    released = _operation(service, "release", holder, None, f"{theirs.id}/nurse-0")
    assert released.status_code == 200, released.text
    assert released.json()["entry"][0]["resource"]["status"] == "proposed"
    assert _slot(service, clinic, second) == "free"
    assert _operation(service, "book", other, second, f"{theirs.id}/nurse-0").status_code == 200


@pytest.fixture
def briefly(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[TestClient]:
    """A service whose holds last a second, and that does not sweep them: only a booking or
    hold of the Slot finds that they lapsed."""
    with ready_app(
        conformance_loaded,
        tmp_path,
        issuer,
        booking_hold_minutes=1 / 60,
        booking_hold_sweep_seconds=3600,
    ) as client:
        yield client


def test_a_lapsed_hold_is_anyones_slot_to_book(briefly: TestClient, issuer: TestIssuer) -> None:
    clinic = issuer.headers("ehr", organization=UNIT)
    platform = issuer.headers("booking", subject="platform-a")
    (slot,) = publish(briefly, clinic, [next(far_hours())])
    late, early = contract_with_times(briefly, clinic), contract_with_times(briefly, clinic)

    held = _operation(briefly, "hold", platform, slot, f"{late.id}/nurse-0")
    taken = _operation(briefly, "book", clinic, slot, f"{early.id}/nurse-0")
    time.sleep(1.5)
    booked = _operation(briefly, "book", clinic, slot, f"{early.id}/nurse-0")

    assert held.status_code == 200, held.text
    assert taken.status_code == 409
    assert booked.status_code == 200, booked.text
    assert _slot(briefly, clinic, slot) == "busy"
    lapsed = _time(briefly, clinic, late.id, "nurse-0")
    assert (lapsed["status"], lapsed.get("slot"), lapsed.get("hold")) == ("proposed", None, None)
    # Its holder comes too late: the time is no longer theirs to book.
    assert _operation(briefly, "book", platform, slot, f"{late.id}/nurse-0").status_code == 409


def test_a_lapsed_hold_is_released_in_hapi_after_a_restart_once_by_two_replicas(
    conformance_loaded: str, tmp_path: Path, issuer: TestIssuer
) -> None:
    def instance(name: str) -> ServiceProcess:
        # The holds live in HAPI: the instances need share nothing else to release them.
        settings = {
            **issuer.env(),
            "HAPI_URL": conformance_loaded,
            "DATABASE_URL": f"sqlite:///{tmp_path / f'{name}.db'}",
            "BOOKING_HOLD_MINUTES": str(3 / 60),
            "BOOKING_HOLD_SWEEP_SECONDS": "0.5",
        }
        return ServiceProcess(settings, tmp_path / f"{name}.log")

    clinic = issuer.headers("ehr", organization=UNIT)
    platform = issuer.headers("booking", subject="platform-a")
    holding = instance("holding")
    holding.start()
    with httpx.Client(base_url=holding.base_url, timeout=60) as client:
        (slot,) = publish(client, clinic, [next(far_hours())])
        contract = contract_with_times(client, clinic)
        held = _operation(client, "hold", platform, slot, f"{contract.id}/nurse-0")
    assert held.status_code == 200, held.text
    appointment = held.json()["entry"][0]["resource"]["id"]
    # The instance that made the hold dies with it; two others share the work from then on.
    holding.kill()
    replicas = [instance("replica-1"), instance("replica-2")]
    for replica in replicas:
        replica.start()
    try:
        with httpx.Client(base_url=replicas[0].base_url, timeout=60) as client:
            deadline = time.monotonic() + 60
            while _slot(client, clinic, slot) != "free":
                assert time.monotonic() < deadline, "the lapsed hold was never released"
                time.sleep(0.5)
            time.sleep(2)  # both replicas have swept since
            versions = client.get(
                f"/fhir/Appointment/{appointment}/_history", headers=clinic
            ).json()["entry"]
            released = client.get(
                "/fhir/Provenance",
                params={"target": f"Appointment/{appointment}"},
                headers=issuer.headers("auditor"),
            ).json()
    finally:
        for replica in replicas:
            replica.stop()

    # Made, held, released: once, though two instances swept it.
    statuses = [e["resource"]["status"] for e in reversed(versions)]
    assert statuses == ["proposed", "pending", "proposed"]
    steps = [e["resource"].get("activity", {}).get("text") for e in released.get("entry", [])]
    assert steps.count("release") == 1
    assert steps.count("hold") == 1
    # Released by the service itself, as its Provenance says.
    release = next(
        e["resource"] for e in released["entry"] if e["resource"]["activity"]["text"] == "release"
    )
    assert "hold-expiry" in json.dumps(release["agent"])


def test_fhirpy_finds_holds_and_books_a_time(base_url: str, issuer: TestIssuer) -> None:
    clinic = issuer.headers("ehr", organization=UNIT)
    start = next(far_hours())
    with httpx.Client(base_url=base_url, timeout=60) as client:
        (slot,) = publish(client, clinic, [start])
        contract = contract_with_times(client, clinic)
    token = issuer.token("booking", subject="fhirpy-platform")
    fhir = SyncFHIRClient(f"{base_url}/fhir", authorization=f"Bearer {token}")
    found = fhir.execute(
        "Appointment/$find",
        method="get",
        params={
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=1)).isoformat(),
            "organization": "urn:oid:1.2.752.29.4.19|SE2321000065-1254",
            "visit-type": f"{urls.CS_TIME_TYPE}|nurse-visit",
        },
    )
    chosen = {
        **found["entry"][0]["resource"],
        "identifier": [{"system": urls.ID_AGREED_TIME, "value": f"{contract.id}/nurse-0"}],
    }
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment", "resource": chosen}],
    }

    held = fhir.execute("Appointment/$hold", data=parameters)
    booked = fhir.execute("Appointment/$book", data=parameters)

    assert held["entry"][0]["resource"]["status"] == "pending"
    assert booked["entry"][0]["resource"]["status"] == "booked"
    assert booked["entry"][0]["resource"]["slot"] == [{"reference": f"Slot/{slot}"}]
