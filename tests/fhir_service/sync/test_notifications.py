"""Change notifications end to end: the real service process, the real HAPI, a real receiver.

Another system writes straight into HAPI; the service learns of it (through HAPI's rest-hook, or
its ``_history`` catch-up after a restart) and delivers signed events to registered webhooks.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from fhir_service import servicedb
from fhir_service.contract import Contract
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.to_fhir import contract_to_bundle
from fhir_service.metrics import Metrics
from fhir_service.servicedb.tables import SyncState
from fhir_service.store import ContractStore
from fhir_service.sync.changes import WATCHED_TYPES
from fhir_service.sync.notifications import Notifications
from fhir_service.sync.subscriptions import TAG_SUBSCRIPTION
from fhir_service.sync.webhook_registrations import TargetPolicy
from tests.auth import TestIssuer
from tests.booking import far_hours
from tests.service_process import running_service
from tests.support import unique_hsa_id, unique_personnummer
from tests.webhook_receiver import Receiver, running_receiver

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
SECRET = "a-test-secret-that-is-long-enough"
EVENT_TIMEOUT = 90.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(SECRET) as server:
        yield server


@pytest.fixture
def settings(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> dict[str, str]:
    return {
        **issuer.env(),
        "HAPI_URL": conformance_loaded,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "CHANGE_FEED_INTERVAL_SECONDS": "1",
    }


@pytest.fixture
def fhir_client(conformance_loaded: str) -> Iterator[httpx.Client]:
    """Another system writing straight into HAPI."""
    with httpx.Client(base_url=conformance_loaded, timeout=60) as client:
        yield client
        for resource_type in ("CarePlan", "CareTeam", "Appointment"):
            found = client.get(
                "/Subscription", params={"_tag": f"{TAG_SUBSCRIPTION}|{resource_type}"}
            )
            for entry in found.json().get("entry", []):
                client.delete(f"/Subscription/{entry['resource']['id']}")


def _contract() -> Contract:
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"notify-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    data["responsible_clinician"]["organization"]["identifier"]["value"] = unique_hsa_id()
    return Contract.model_validate(data)


def _register(service: str, receiver: Receiver, contract: Contract, issuer: TestIssuer) -> str:
    unit = contract.responsible_clinician.organization.identifier
    response = httpx.post(
        f"{service}/webhooks",
        headers=issuer.headers("ehr", organization=f"{unit.kind.value}|{unit.value}"),
        json={
            "url": receiver.url,
            "secret": SECRET,
            "patient": {"kind": "personnummer", "value": contract.patient.identifier.value},
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _write_straight_into_hapi(fhir: httpx.Client, contract: Contract) -> None:
    response = fhir.post("/", json=contract_to_bundle(contract, "sv", new=True))
    assert response.status_code == 200, response.text


def _of(receiver: Receiver, contract: Contract) -> list[dict[str, Any]]:
    return [e for e in receiver.events() if (e["contract"] or {}).get("id") == contract.id]


def _wait_for(
    what: str, condition: Callable[[], bool], tick: Callable[[], None] = lambda: None
) -> None:
    deadline = time.monotonic() + EVENT_TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        tick()
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {EVENT_TIMEOUT:.0f} s")


def test_a_change_made_straight_in_hapi_reaches_the_webhook_through_the_rest_hook(
    settings: dict[str, str],
    fhir_client: httpx.Client,
    receiver: Receiver,
    tmp_path: Path,
    issuer: TestIssuer,
) -> None:
    # The timer is off (an hour): only HAPI's rest-hook can make the service look.
    settings["CHANGE_FEED_INTERVAL_SECONDS"] = "3600"
    contract = _contract()
    with running_service(settings, tmp_path / "service.log") as service:
        _register(service, receiver, contract, issuer)
        _wait_for("HAPI's subscriptions are active", lambda: _subscribed(fhir_client, service))
        _write_straight_into_hapi(fhir_client, contract)
        careplan = _careplan(fhir_client, contract)

        # HAPI matches changes against its in-memory registry, which may lag the activation by
        # a moment; further changes by the other system are further chances.
        _wait_for(
            "the CarePlan change reached the receiver",
            lambda: any(
                e["resource"]["resourceType"] == "CarePlan" for e in _of(receiver, contract)
            ),
            tick=lambda: _touch(fhir_client, careplan),
        )

    # The transaction changed the CareTeam too, and its event may come first: HAPI activates
    # each subscription on its own.
    events = [e for e in _of(receiver, contract) if e["resource"]["resourceType"] == "CarePlan"]
    assert events[0]["resource"]["reference"].startswith(f"CarePlan/{careplan['id']}/_history/")
    assert receiver.bad_signatures == []
    assert receiver.duplicates == []


def test_a_receiver_that_is_down_for_a_while_gets_every_event_once(
    settings: dict[str, str],
    fhir_client: httpx.Client,
    receiver: Receiver,
    tmp_path: Path,
    issuer: TestIssuer,
) -> None:
    contract = _contract()
    with running_service(settings, tmp_path / "service.log") as service:
        _register(service, receiver, contract, issuer)
        receiver.down = True
        _write_straight_into_hapi(fhir_client, contract)
        _wait_for("deliveries were tried", lambda: len(set(receiver.attempts)) >= 3)
        time.sleep(3)
        tried = set(receiver.attempts)
        receiver.down = False
        _wait_for("every event arrived", lambda: tried <= {e["id"] for e in receiver.events()})

    types = {e["type"] for e in _of(receiver, contract)}
    assert {"CarePlan.created", "CareTeam.created", "Appointment.created"} <= types
    assert len(receiver.attempts) > len(tried), "refused events were sent again"
    assert receiver.duplicates == []


def test_a_change_made_while_the_service_was_down_goes_out_after_it_starts(
    settings: dict[str, str],
    fhir_client: httpx.Client,
    receiver: Receiver,
    tmp_path: Path,
    issuer: TestIssuer,
) -> None:
    contract = _contract()
    with running_service(settings, tmp_path / "first.log") as service:
        _register(service, receiver, contract, issuer)
        _wait_for("the first start read HAPI's history", lambda: _cursor_set(tmp_path))

    _write_straight_into_hapi(fhir_client, contract)
    assert _of(receiver, contract) == []

    with running_service(settings, tmp_path / "second.log"):
        _wait_for(
            "the change made while down arrived",
            lambda: any(e["type"] == "CarePlan.created" for e in _of(receiver, contract)),
        )

    assert receiver.duplicates == []


def _subscribed(fhir: httpx.Client, service: str) -> bool:
    endpoint = f"{service}/hooks/hapi"
    for resource_type in ("CarePlan", "CareTeam", "Appointment"):
        found = fhir.get("/Subscription", params={"_tag": f"{TAG_SUBSCRIPTION}|{resource_type}"})
        entries = found.json().get("entry", [])
        if not any(
            e["resource"]["status"] == "active" and e["resource"]["channel"]["endpoint"] == endpoint
            for e in entries
        ):
            return False
    return True


def _careplan(fhir: httpx.Client, contract: Contract) -> dict[str, Any]:
    found = fhir.get("/CarePlan", params={"identifier": f"{urls.ID_CONTRACT}|{contract.id}"})
    resource: dict[str, Any] = found.json()["entry"][0]["resource"]
    return resource


def _touch(fhir: httpx.Client, careplan: dict[str, Any]) -> None:
    current = fhir.get(f"/CarePlan/{careplan['id']}").json()
    current["description"] = f"touched by another system at {time.time()}"
    fhir.put(f"/CarePlan/{careplan['id']}", json=current)


def _cursor_set(tmp_path: Path) -> bool:
    engine = servicedb.make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    try:
        with Session(engine) as session:
            # Each watched type keeps its own cursor; the first start sets every one.
            names = [f"history_cursor:{t}" for t in WATCHED_TYPES]
            return all(session.get(SyncState, name) is not None for name in names)
    except OperationalError:
        return False  # not migrated yet
    finally:
        engine.dispose()


def test_a_booking_through_the_service_reaches_the_webhook(
    settings: dict[str, str], receiver: Receiver, tmp_path: Path, issuer: TestIssuer
) -> None:
    unit = "hsa-id|SE2321000065-1254"
    clinic = issuer.headers("ehr", organization=unit)
    contract = _contract()
    data = contract.model_dump(mode="json")
    data["responsible_clinician"]["organization"]["identifier"]["value"] = unit.split("|")[1]
    organization = data["responsible_clinician"]["organization"]
    data["professionals"] = []
    data["care_contacts"] = []
    data["agreed_times"] = [
        {
            "key": "nurse",
            "description": "Besök hos sjuksköterskan",
            "organization": organization,
            "time_type": "nurse-visit",
        }
    ]
    contract = Contract.model_validate(data)
    start = next(far_hours())
    times = [{"start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}]
    with running_service(settings, tmp_path / "service.log") as service:
        _register(service, receiver, contract, issuer)
        created = httpx.post(f"{service}/contracts", json=data, headers=clinic)
        assert created.status_code == 201, created.text
        published = httpx.post(
            f"{service}/booking/care-units/{unit}/time-types/nurse-visit/slots",
            json={"times": times},
            headers=clinic,
        )
        assert published.status_code == 200, published.text
        slot = httpx.get(
            f"{service}/booking/slots",
            params={"careUnit": unit, "timeType": "nurse-visit", "from": start.isoformat()},
            headers=clinic,
        ).json()["slots"][0]["id"]
        booked = httpx.post(
            f"{service}/booking/contracts/{contract.id}/times/nurse/book",
            json={"slot": slot},
            headers=issuer.headers("booking"),
        )
        assert booked.status_code == 200, booked.text
        _wait_for(
            "the booking reached the receiver",
            lambda: any(e["type"] == "Appointment.updated" for e in _of(receiver, contract)),
        )

    update = next(e for e in _of(receiver, contract) if e["type"] == "Appointment.updated")
    assert "/_history/2" in update["resource"]["reference"]
    assert receiver.bad_signatures == []


class _SettlingFeed:
    """A change feed that read a burst lately: it is to be read again soon."""

    settling = True

    def __init__(self) -> None:
        self.reads = 0

    async def catch_up(self) -> int:
        self.reads += 1
        return 0


async def test_after_a_burst_the_feed_is_read_again_within_moments_not_at_its_interval(
    tmp_path: Path,
) -> None:
    engine = servicedb.make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    hapi = HapiClient("http://127.0.0.1:9/fhir", Metrics())
    async with httpx.AsyncClient() as http:
        notifications = Notifications(
            hapi,
            engine,
            ContractStore(hapi),
            http,
            policy=TargetPolicy(),
            hook_url="http://127.0.0.1:9/hooks/hapi",
            feed_interval_seconds=3600,
            time_types_changed=asyncio.Event(),
        )
        feed = _SettlingFeed()
        notifications.feed = feed  # type: ignore[assignment]
        loop = asyncio.create_task(notifications._feed_loop())
        await asyncio.sleep(2.5)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    await hapi.aclose()
    engine.dispose()
    # Not woken, and an hour between timed reads: read again because it was settling.
    assert feed.reads >= 2
