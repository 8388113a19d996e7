"""The outbox on SQLite and PostgreSQL: claims, leases, back-off, signing, two instances at once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fhir_service import servicedb
from fhir_service.sync.webhook_deliveries import DeliveryWorker, Outbox, enqueue, sign
from fhir_service.sync.webhook_registrations import Reach, TargetPolicy, WebhookRegistry
from tests.support import load_data
from tests.webhook_receiver import running_receiver

SECRET = "a-test-secret-that-is-long-enough"
LOCAL = TargetPolicy(allow_http=True, allow_private_networks=True)


def _webhook(engine: Engine, url: str = "https://ehr.example/events") -> str:
    return WebhookRegistry(engine, LOCAL).register(url, SECRET, owner="ehr", reach=Reach()).id


def _events(engine: Engine, webhook_id: str, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        for number, event_id in enumerate(ids):
            enqueue(session, event_id, {"id": event_id, "n": number}, [webhook_id], now)
    return ids


def test_the_signature_matches_the_standard_webhooks_example() -> None:
    vector = load_data("webhooks/standard-webhooks-vector.json")

    signature = sign(vector["secret"], vector["id"], vector["timestamp"], vector["body"].encode())

    assert signature == vector["signature"]


def test_a_plain_secret_signs_with_its_own_bytes_and_the_receiver_check_agrees() -> None:
    body = b'{"id":"e1"}'
    with running_receiver(SECRET) as receiver:
        assert receiver.verify("e1", "1700000000", body, sign(SECRET, "e1", 1700000000, body))
        assert not receiver.verify("e1", "1700000001", body, sign(SECRET, "e1", 1700000000, body))
        assert not receiver.verify("e1", "1700000000", body, sign("x" * 30, "e1", 1700000000, body))


def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_runs_out(engine: Engine) -> None:
    outbox = Outbox(engine, lease=timedelta(seconds=60))
    ids = _events(engine, _webhook(engine), 3)

    first = outbox.claim(10)
    again = outbox.claim(10)
    after_lease = outbox.claim(10, now=datetime.now(UTC) + timedelta(seconds=61))

    assert sorted(c.event_id for c in first) == sorted(ids)
    assert again == []
    assert sorted(c.event_id for c in after_lease) == sorted(ids)


def test_delivered_rows_are_done_and_failed_rows_come_back_after_their_back_off(
    engine: Engine,
) -> None:
    outbox = Outbox(engine, first_retry=timedelta(seconds=10))
    webhook_id = _webhook(engine)
    done, failing = _events(engine, webhook_id, 2)
    claims = {c.event_id: c for c in outbox.claim(10)}

    outbox.delivered(claims[done])
    outbox.failed(claims[failing], "HTTP 503")

    assert outbox.pending() == 1
    assert outbox.claim(10, now=datetime.now(UTC) + timedelta(seconds=4)) == []
    retried = outbox.claim(10, now=datetime.now(UTC) + timedelta(seconds=11))
    assert [(c.event_id, c.attempts) for c in retried] == [(failing, 1)]


def test_the_back_off_doubles_with_jitter_and_stops_growing_at_its_cap(engine: Engine) -> None:
    outbox = Outbox(engine, first_retry=timedelta(seconds=2), max_retry=timedelta(minutes=5))

    waits = {attempts: outbox.backoff(attempts) for attempts in (1, 2, 3, 10, 100)}

    assert timedelta(seconds=1) <= waits[1] <= timedelta(seconds=2)
    assert timedelta(seconds=2) <= waits[2] <= timedelta(seconds=4)
    assert timedelta(seconds=4) <= waits[3] <= timedelta(seconds=8)
    assert timedelta(minutes=2.5) <= waits[10] <= timedelta(minutes=5)
    assert timedelta(minutes=2.5) <= waits[100] <= timedelta(minutes=5)


async def test_a_receiver_that_is_down_gets_every_event_once_when_it_is_back(
    engine: Engine,
) -> None:
    outbox = Outbox(engine, first_retry=timedelta(milliseconds=100), max_retry=timedelta(seconds=1))
    with running_receiver(SECRET) as receiver:
        ids = _events(engine, _webhook(engine, receiver.url), 5)
        receiver.down = True
        async with httpx.AsyncClient() as http:
            worker = DeliveryWorker(outbox, http)
            for _ in range(3):
                await worker.run_once()
                await asyncio.sleep(1.1)
            refused = len(receiver.attempts)
            receiver.down = False
            await _deliver_all(worker, outbox)

    assert refused >= 10, "the sends while it was down were tried and refused"
    assert sorted(e["id"] for e in receiver.events()) == sorted(ids)
    assert receiver.duplicates == []
    assert receiver.bad_signatures == []


async def test_two_workers_on_one_database_deliver_each_event_once(engine: Engine) -> None:
    second_engine = servicedb.make_engine(engine.url.render_as_string(hide_password=False))
    with running_receiver(SECRET) as receiver:
        ids = _events(engine, _webhook(engine, receiver.url), 60)
        async with httpx.AsyncClient() as http:
            workers = [
                DeliveryWorker(Outbox(engine), http, batch=5),
                DeliveryWorker(Outbox(second_engine), http, batch=5),
            ]
            await asyncio.gather(*(_deliver_all(w, w.outbox) for w in workers))
    second_engine.dispose()

    assert sorted(receiver.attempts) == sorted(ids), "each event was sent exactly once"
    assert sorted(e["id"] for e in receiver.events()) == sorted(ids)
    assert sorted(e["n"] for e in receiver.events()) == list(range(60))


async def _deliver_all(worker: DeliveryWorker, outbox: Outbox, rounds: int = 200) -> None:
    for _ in range(rounds):
        if await asyncio.to_thread(outbox.pending) == 0:
            return
        if not await worker.run_once():
            await asyncio.sleep(0.1)
    pytest.fail(f"{await asyncio.to_thread(outbox.pending)} deliveries still pending")
