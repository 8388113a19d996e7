"""Time types as data the clinic's own system manages, against the real HAPI: a unit nobody here
wrote into the repository defines its types through the API, publishes times, and patients
book them; a change applies to times booked afterwards; retiring closes or refuses."""

from __future__ import annotations

import json
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
from tests.booking import far_hours
from tests.service_app import ready_app
from tests.support import load_data, unique_hsa_id, unique_personnummer
from tests.time_types import define

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
EXAMPLE_UNIT = "SE2321000065-1254"
ONE_TIME = {"times": [{"start": "2032-01-01T09:00:00+01:00", "end": "2032-01-01T09:30:00+01:00"}]}


@pytest.fixture(scope="module")
def service(
    conformance_loaded: str, tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[TestClient]:
    with ready_app(conformance_loaded, tmp_path_factory.mktemp("time-types"), issuer) as client:
        yield client


class NewUnit:
    """A care unit that exists nowhere in the repository, with its EHR's token."""

    def __init__(self, issuer: TestIssuer) -> None:
        self.hsa_id = unique_hsa_id()
        self.unit = f"hsa-id|{self.hsa_id}"
        self.ehr = issuer.headers("ehr", organization=self.unit)
        definition = load_data("booking/new-unit-time-type.json")
        self.type: dict[str, Any] = definition
        self.code = str(definition["code"])
        self.issuer = issuer

    def define(self, service: TestClient, **changed: Any) -> Any:
        unit = {
            "care_unit": self.unit,
            "unit_name": self.type["unit_name"],
            "time_zone": changed.pop("time_zone", self.type["time_zone"]),
        }
        body = {k: v for k, v in self.type.items() if k not in ("unit_name", "time_zone")}
        return define(service, self.ehr, unit, body | changed)

    def publish(self, service: TestClient, starts: list[datetime]) -> list[str]:
        times = [
            {"start": s.isoformat(), "end": (s + timedelta(minutes=30)).isoformat()} for s in starts
        ]
        path = f"/booking/care-units/{self.unit}/time-types/{self.code}/slots"
        published = service.post(path, json={"times": times}, headers=self.ehr)
        assert published.status_code == 200, published.text
        found = service.get(
            "/booking/slots",
            params={
                "careUnit": self.unit,
                "timeType": self.code,
                "from": min(starts).isoformat(),
                "to": (max(starts) + timedelta(minutes=1)).isoformat(),
            },
            headers=self.ehr,
        )
        assert found.status_code == 200, found.text
        by_start = {datetime.fromisoformat(s["start"]): s["id"] for s in found.json()["slots"]}
        return [by_start[s] for s in starts]

    def contract(
        self, service: TestClient, times: int, waiting_since: datetime | None = None
    ) -> tuple[Contract, dict[str, str]]:
        """An agreed contract of this unit for a new patient, with ``times`` proposed times of
        its type (waiting for a specialist visit ``waiting_since``); and the patient's
        token."""
        text = (EXAMPLES / "elderly-psychiatry.json").read_text("utf-8")
        data = json.loads(text.replace(EXAMPLE_UNIT, self.hsa_id))
        data["id"] = f"tt-{uuid.uuid4().hex[:16]}"
        data["patient"]["identifier"]["value"] = unique_personnummer()
        data["agreed_times"] = [
            {
                "key": f"visit-{n}",
                "description": "Kostrådgivning",
                "organization": data["responsible_clinician"]["organization"],
                "time_type": self.code,
            }
            for n in range(times)
        ]
        if waiting_since is not None:
            data["care_guarantee"] = {
                "jurisdiction": "SE",
                "step": "specialist-visit",
                "since": waiting_since.isoformat(),
            }
        contract = Contract.model_validate(data)
        created = service.post(
            "/contracts", json=contract.model_dump(mode="json"), headers=self.ehr
        )
        assert created.status_code == 201, created.text
        agreed = service.post(
            f"/contracts/{contract.id}/agree",
            json=load_data("booking/agreements.json"),
            headers={**self.ehr, "If-Match": 'W/"1"'},
        )
        assert agreed.status_code == 200, agreed.text
        patient = f"personnummer|{contract.patient.identifier.value}"
        return contract, self.issuer.headers("patient", patient=patient)


def _act(
    service: TestClient,
    headers: dict[str, str],
    contract: Contract,
    key: str,
    act: str,
    **body: Any,
) -> Any:
    return service.post(
        f"/booking/contracts/{contract.id}/times/{key}/{act}", json=body, headers=headers
    )


def test_a_unit_nobody_wrote_here_defines_its_types_and_patients_book_cancel_and_rebook(
    service: TestClient, issuer: TestIssuer
) -> None:
    unit = NewUnit(issuer)
    # Before it defines anything, it has nothing to publish.
    hours = far_hours()
    early = service.post(
        f"/booking/care-units/{unit.unit}/time-types/{unit.code}/slots",
        json={
            "times": [{"start": "2031-01-01T09:00:00+01:00", "end": "2031-01-01T09:30:00+01:00"}]
        },
        headers=unit.ehr,
    )
    assert early.status_code == 404, early.text

    defined = unit.define(service)

    assert defined.status_code == 201, defined.text
    assert defined.json()["created"] is True
    assert defined.json()["time_type"]["names"]["nb"] == unit.type["names"]["nb"]
    listed = service.get(f"/booking/care-units/{unit.unit}/time-types", headers=unit.ehr)
    assert [t["code"] for t in listed.json()["time_types"]] == [unit.code]
    starts = [next(hours) for _ in range(3)]
    slots = unit.publish(service, starts)
    contract, patient = unit.contract(service, times=1)

    # Patients see what the clinic calls it, in their language.
    offered = service.get(
        "/booking/slots",
        params={"careUnit": unit.unit, "timeType": unit.code, "from": starts[0].isoformat()},
        headers={**patient, "Accept-Language": "en"},
    )
    assert {s["name"] for s in offered.json()["slots"]} == {"Dietitian visit"}
    booked = _act(service, patient, contract, "visit-0", "book", slot=slots[0])
    assert booked.status_code == 200, booked.text
    assert booked.json()["online_rules"] == {
        "cancel": True,
        "rebook": True,
        "cancel_cutoff_hours": 24,
    }
    moved = _act(service, patient, contract, "visit-0", "rebook", slot=slots[1])
    assert moved.status_code == 200, moved.text
    cancelled = _act(service, patient, contract, "visit-0", "cancel", reason="Förhinder")
    assert cancelled.status_code == 200, cancelled.text
    again = _act(service, patient, contract, "visit-0", "book", slot=slots[2])
    assert again.status_code == 200, again.text
    mine = service.get(
        f"/booking/patients/personnummer|{contract.patient.identifier.value}/times",
        headers={**patient, "Accept-Language": "nb"},
    )
    assert [(t["time"]["key"], t["name"]) for t in mine.json()["times"]] == [
        ("visit-0", unit.type["names"]["nb"])
    ]

    # HAPI holds it as the clinic defined it: a profiled HealthcareService of the unit.
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    found = service.portal.call(  # type: ignore[union-attr]
        hapi.search,
        "HealthcareService",
        [("identifier", f"{urls.ID_TIME_TYPE}|hsa-id:{unit.hsa_id}/{unit.code}")],
    )
    stored = found.matches()
    assert len(stored) == 1
    assert stored[0]["meta"]["profile"] == [urls.PROFILE_TIME_TYPE]
    assert stored[0]["providedBy"]["identifier"]["value"] == unit.hsa_id
    slot_states = [
        service.portal.call(hapi.read, "Slot", s)["status"]  # type: ignore[union-attr]
        for s in slots
    ]
    assert slot_states == ["free", "free", "busy"]


def test_a_changed_cut_off_applies_to_times_booked_afterwards(
    service: TestClient, issuer: TestIssuer
) -> None:
    unit = NewUnit(issuer)
    assert unit.define(service).status_code == 201
    # Two days ahead: inside a 72-hour cut-off, outside a 24-hour one.
    soon = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=48)
    slots = unit.publish(service, [soon, soon + timedelta(hours=1)])
    contract, patient = unit.contract(service, times=2)
    first = _act(service, patient, contract, "visit-0", "book", slot=slots[0])
    assert first.status_code == 200, first.text

    asked_at = datetime.now(UTC)
    changed = unit.define(service, cancel_cutoff_hours=72)

    assert changed.status_code == 200, changed.text
    answer = changed.json()
    assert answer["created"] is False
    assert answer["before"]["cancel_cutoff_hours"] == 24
    assert answer["time_type"]["cancel_cutoff_hours"] == 72
    assert asked_at <= datetime.fromisoformat(answer["applies_from"]) <= datetime.now(UTC)
    second = _act(service, patient, contract, "visit-1", "book", slot=slots[1])
    assert second.status_code == 200, second.text
    assert second.json()["online_rules"]["cancel_cutoff_hours"] == 72
    # The time booked before keeps its 24 hours: the patient may still cancel it; the one
    # booked after is held to 72 and may not.
    late = _act(service, patient, contract, "visit-1", "cancel", reason="Kan inte")
    assert late.status_code == 409, late.text
    assert "72 hours" in late.json()["detail"]
    kept = _act(service, patient, contract, "visit-0", "cancel", reason="Kan inte")
    assert kept.status_code == 200, kept.text
    assert kept.json()["online_rules"]["cancel_cutoff_hours"] == 24


def test_retiring_a_type_with_free_times_is_refused_or_closes_them_as_asked(
    service: TestClient, issuer: TestIssuer
) -> None:
    unit = NewUnit(issuer)
    assert unit.define(service).status_code == 201
    hours = far_hours()
    slots = unit.publish(service, [next(hours) for _ in range(3)])
    contract, _ = unit.contract(service, times=1)
    booked = _act(service, unit.ehr, contract, "visit-0", "book", slot=slots[0])
    assert booked.status_code == 200, booked.text
    path = f"/booking/care-units/{unit.unit}/time-types/{unit.code}"

    refused = service.delete(path, headers=unit.ehr)
    refused_too = service.delete(path, params={"free-slots": "refuse"}, headers=unit.ehr)

    assert refused.status_code == refused_too.status_code == 409, refused.text
    assert "2 free times" in refused.json()["detail"]
    listed = service.get(f"/booking/care-units/{unit.unit}/time-types", headers=unit.ehr)
    assert listed.json()["time_types"][0]["active"] is True

    closed = service.delete(path, params={"free-slots": "close"}, headers=unit.ehr)

    assert closed.status_code == 200, closed.text
    assert closed.json()["closed_free_slots"] == 2
    assert closed.json()["time_type"]["active"] is False
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    states = [
        service.portal.call(hapi.read, "Slot", s)["status"]  # type: ignore[union-attr]
        for s in slots
    ]
    assert states == ["busy", "busy-unavailable", "busy-unavailable"]
    # No longer offered, published or booked; the booked time stays booked, named by it.
    asked = {"careUnit": unit.unit, "timeType": unit.code}
    assert service.get("/booking/slots", params=asked, headers=unit.ehr).status_code == 404
    republished = service.post(
        f"{path}/slots",
        json={
            "times": [{"start": "2032-01-01T09:00:00+01:00", "end": "2032-01-01T09:30:00+01:00"}]
        },
        headers=unit.ehr,
    )
    assert republished.status_code == 404
    read = service.get(f"/contracts/{contract.id}", headers=unit.ehr)
    assert read.json()["agreed_times"][0]["status"] == "booked"
    # Defined again, it is offered again.
    assert unit.define(service).json()["time_type"]["active"] is True


def test_only_the_units_own_system_defines_or_retires_its_types(
    service: TestClient, issuer: TestIssuer
) -> None:
    unit = NewUnit(issuer)
    other = NewUnit(issuer)
    patient = issuer.headers("patient", patient=f"personnummer|{unique_personnummer()}")
    platform = issuer.headers("booking")
    path = f"/booking/care-units/{unit.unit}/time-types/{unit.code}"

    for headers in (other.ehr, patient, platform):
        unit_of_other = NewUnit(issuer)
        unit_of_other.ehr = headers
        unit_of_other.unit = unit.unit
        assert unit_of_other.define(service).status_code == 403
        assert service.delete(path, headers=headers).status_code == 403
    listed = service.get(f"/booking/care-units/{unit.unit}/time-types", headers=unit.ehr)
    assert listed.status_code == 404


def test_a_bad_definition_gets_every_problem_at_once(
    service: TestClient, issuer: TestIssuer
) -> None:
    unit = NewUnit(issuer)

    refused = unit.define(
        service,
        names={"sv": "Besök"},
        minutes=0,
        appointment_type="SOMETIMES",
        time_zone="Mars/Olympus_Mons",
    )

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    where = {e["location"] for e in refused.json()["errors"]}
    assert where >= {"$.names", "$.minutes", "$.appointment_type", "$.time_zone"}
    unknown_step = unit.define(service, care_guarantee_step="treatment-start")
    assert unknown_step.status_code == 422, unknown_step.text
    assert "treatment-start" in unknown_step.text


def test_another_instance_reads_a_change_when_hapi_says_so(
    service: TestClient,
    issuer: TestIssuer,
    conformance_loaded: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    unit = NewUnit(issuer)
    assert unit.define(service).status_code == 201
    listed = f"/booking/care-units/{unit.unit}/time-types"
    directory = tmp_path_factory.mktemp("replica")
    # A second instance that would read the time types again only every ten minutes, unless
    # woken: HAPI's rest-hook wakes it.
    with ready_app(
        conformance_loaded, directory, issuer, change_feed_interval_seconds=600
    ) as replica:
        assert replica.get(listed, headers=unit.ehr).status_code == 200
        assert unit.define(service, minutes=45).status_code == 200
        token = replica.app.state.service.notifications.hook_token  # type: ignore[attr-defined]
        woken = replica.post("/hooks/hapi/time-types", headers={"Authorization": f"Bearer {token}"})
        assert woken.status_code == 204
        deadline = time.monotonic() + 30
        while replica.get(listed, headers=unit.ehr).json()["time_types"][0]["minutes"] != 45:
            assert time.monotonic() < deadline, "the replica never read the change"
            time.sleep(0.2)
        stranger = replica.post("/hooks/hapi/time-types", headers={"Authorization": "Bearer x"})
        assert stranger.status_code == 401


def test_the_care_guarantee_judges_times_of_a_type_the_clinic_defined(
    service: TestClient, issuer: TestIssuer
) -> None:
    unit = NewUnit(issuer)
    # Its dietitian visits count towards the specialist visit (90 days in Sweden).
    assert unit.define(service).status_code == 201
    hours = far_hours()
    start = next(hours)
    slots = unit.publish(service, [start])
    contract, _ = unit.contract(service, times=2, waiting_since=start - timedelta(days=100))

    booked = _act(service, unit.ehr, contract, "visit-0", "book", slot=slots[0])

    assert booked.status_code == 200, booked.text
    assert booked.json()["care_guarantee"]["late"] is True
    assert booked.json()["care_guarantee"]["days_over"] == 10
    listed = service.get(
        "/booking/care-guarantee/breaches", params={"careUnit": unit.unit}, headers=unit.ehr
    )
    assert {(b["time"]["key"], b["booked"]) for b in listed.json()["breaches"]} >= {
        ("visit-0", True)
    }


def test_twenty_clients_defining_one_new_type_at_once_leave_one_record(
    service: TestClient, issuer: TestIssuer
) -> None:
    unit = NewUnit(issuer)
    lengths = list(range(20, 60, 2))

    with ThreadPoolExecutor(len(lengths)) as pool:
        answers = list(pool.map(lambda minutes: unit.define(service, minutes=minutes), lengths))

    statuses = Counter(a.status_code for a in answers)
    # Each is defined, changed, or told to send again; never a server error.
    assert set(statuses) <= {200, 201, 409}, [a.text for a in answers if a.status_code >= 500]
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    found = service.portal.call(  # type: ignore[union-attr]
        hapi.search,
        "HealthcareService",
        [("identifier", f"{urls.ID_TIME_TYPE}|hsa-id:{unit.hsa_id}/{unit.code}")],
    )
    assert len(found.matches()) == 1
    listed = service.get(f"/booking/care-units/{unit.unit}/time-types", headers=unit.ehr)
    assert listed.json()["time_types"][0]["minutes"] in lengths
