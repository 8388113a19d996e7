"""The delivery worker as a pipeline, on SQLite and PostgreSQL, against real local receivers: a
slow or hung receiver holds up nobody else, no receiver gets more sends at once than the bound,
claims take turns across webhooks, and a turn costs one transaction however much it records."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from fhir_service.sync.webhook_deliveries import Claim, DeliveryWorker, Outbox, Outcome, enqueue
from fhir_service.sync.webhook_registrations import Reach, TargetPolicy, WebhookRegistry

SECRET = "a-test-secret-that-is-long-enough"
LOCAL = TargetPolicy(allow_http=True, allow_private_networks=True)
# A safety net only: every wait below ends as soon as its condition holds.
PATIENCE = 120.0


class _Tally:
    """How many requests are being answered at once, and the most there ever were."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class _Gated(ThreadingHTTPServer):
    """A receiver that holds every request until ``gate`` opens (open from the start unless
    asked), counting how many it holds at once, here and in ``everyone`` (a tally receivers
    share); each request also waits, up to a moment, for ``crowd`` requests to be there
    together, so that a bound that allows a crowd meets one."""

    daemon_threads = True
    # Its keep-alive connections end with the worker's client, not with the server.
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self, *, held: bool = False, crowd: int = 1, everyone: _Tally | None = None
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gate = threading.Event()
        if not held:
            self.gate.set()
        self.crowd = crowd
        self.everyone = everyone or _Tally()
        self.together = threading.Condition()
        self.now = 0
        self.most = 0
        self.ids: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/events"

    def arrived(self) -> int:
        with self.together:
            return len(self.ids)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Gated

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.everyone.enter()
        with self.server.together:
            self.server.now += 1
            self.server.most = max(self.server.most, self.server.now)
            self.server.together.notify_all()
            self.server.together.wait_for(lambda: self.server.now >= self.server.crowd, 0.5)
        self.server.gate.wait(PATIENCE)
        with self.server.together:
            self.server.now -= 1
            self.server.ids.append(self.headers.get("webhook-id", ""))
        self.server.everyone.leave()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def _serving(*servers: _Gated) -> Iterator[None]:
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        for server in servers:
            server.gate.set()
            server.shutdown()
            server.server_close()


def _webhook(engine: Engine, url: str) -> str:
    return WebhookRegistry(engine, LOCAL).register(url, SECRET, owner="ehr", reach=Reach()).id


def _enqueue(engine: Engine, webhook_ids: list[str], count: int, start: datetime) -> list[str]:
    """``count`` events for all of ``webhook_ids``, a millisecond apart from ``start``."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with Session(engine) as session, session.begin():
        for number, event_id in enumerate(ids):
            moment = start + timedelta(milliseconds=number)
            enqueue(session, event_id, {"id": event_id}, webhook_ids, moment)
    return ids


async def _until(what: str, condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{what}: not within {PATIENCE:.0f} s")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def _running(
    worker: DeliveryWorker, wake: asyncio.Event, idle_seconds: float = 2.0
) -> AsyncIterator[None]:
    """The worker running in the background for the block; stopped and done with after it."""
    task = asyncio.get_running_loop().create_task(worker.run_forever(wake, idle_seconds))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_receiver_that_hangs_does_not_hold_up_another_receivers_deliveries(
    engine: Engine,
) -> None:
    hung, well = _Gated(held=True), _Gated()
    with _serving(hung, well):
        # More events than a round of the old worker took, the hung receiver's first among
        # them: a worker that waited for a round's slowest send would stall here.
        ids = _enqueue(
            engine, [_webhook(engine, hung.url), _webhook(engine, well.url)], 30, _past()
        )
        async with httpx.AsyncClient() as http:
            worker = DeliveryWorker(Outbox(engine), http, per_webhook=4, timeout=PATIENCE)
            async with _running(worker, asyncio.Event()):
                await _until("the other receiver got every event", lambda: well.arrived() == 30)
                await _until("the hung receiver holds its sends", lambda: hung.now >= 4)
                held = hung.now
                hung.gate.set()
                await _until("the hung receiver got every event", lambda: hung.arrived() == 30)
                await _until("nothing is pending", lambda: Outbox(engine).pending() == 0)

    assert held == 4, "the hung receiver held its own four places, and only those"
    assert sorted(hung.ids) == sorted(ids), "each event once"
    assert sorted(well.ids) == sorted(ids), "each event once"


async def test_no_receiver_gets_more_sends_at_once_than_its_bound_nor_all_more_than_theirs(
    engine: Engine,
) -> None:
    everyone = _Tally()
    receivers = [_Gated(crowd=3, everyone=everyone) for _ in range(3)]
    with _serving(*receivers):
        ids = _enqueue(engine, [_webhook(engine, r.url) for r in receivers], 20, _past())
        async with httpx.AsyncClient() as http:
            worker = DeliveryWorker(Outbox(engine), http, per_webhook=3, batch=7)
            async with _running(worker, asyncio.Event()):
                await _until(
                    "every receiver got every event",
                    lambda: all(r.arrived() == 20 for r in receivers),
                )

    assert max(r.most for r in receivers) == 3, "a receiver had its three at once"
    assert all(r.most <= 3 for r in receivers), "and none ever more"
    assert everyone.most <= 7
    assert all(sorted(r.ids) == sorted(ids) for r in receivers), "each event once"


class _Watched(Outbox):
    """An outbox that says when the worker has made its first turn."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.turned = threading.Event()

    def exchange(self, *args: Any, **kwargs: Any) -> list[Claim]:
        claims = super().exchange(*args, **kwargs)
        self.turned.set()
        return claims


async def test_a_worker_woken_by_new_deliveries_sends_them_without_waiting_for_its_timer(
    engine: Engine,
) -> None:
    receiver = _Gated()
    wake = asyncio.Event()
    outbox = _Watched(engine)
    with _serving(receiver):
        webhook = _webhook(engine, receiver.url)
        http = httpx.AsyncClient()
        # An hour between looks: once it has looked and found nothing, only the wake can make
        # it send what comes in.
        async with http, _running(DeliveryWorker(outbox, http), wake, idle_seconds=3600):
            await _until("the worker looked", outbox.turned.is_set)
            ids = _enqueue(engine, [webhook], 3, datetime.now(UTC))
            wake.set()
            await _until("the new events arrived", lambda: receiver.arrived() == 3)

    assert sorted(receiver.ids) == sorted(ids)


def test_a_claim_takes_every_webhooks_oldest_before_any_webhooks_second(engine: Engine) -> None:
    outbox = Outbox(engine)
    busy, quiet, other = (_webhook(engine, f"https://ehr.example/{n}") for n in "abc")
    # The busy webhook's backlog is older than anything the others have.
    backlog = _enqueue(engine, [busy], 50, _past(minutes=10))
    fresh = {
        quiet: _enqueue(engine, [quiet], 2, _past(minutes=1)),
        other: _enqueue(engine, [other], 2, _past(minutes=1)),
    }

    first = outbox.claim(4)
    capped = outbox.exchange((), 10, per_webhook=2, sending={busy: 1, quiet: 2})

    assert sorted((c.webhook_id, c.event_id) for c in first) == sorted(
        [(busy, backlog[0]), (quiet, fresh[quiet][0]), (other, fresh[other][0]), (busy, backlog[1])]
    )
    # Two places a webhook, less what is in flight: one for busy, none for quiet, two for other.
    assert sorted((c.webhook_id, c.event_id) for c in capped) == sorted(
        [(busy, backlog[2]), (other, fresh[other][1])]
    )


def test_a_turn_records_every_send_and_claims_more_in_one_transaction(engine: Engine) -> None:
    outbox = Outbox(engine, first_retry=timedelta(minutes=5))
    webhook = _webhook(engine, "https://ehr.example/events")
    _enqueue(engine, [webhook], 60, _past())
    claims = outbox.claim(30)
    outcomes = [Outcome(c) for c in claims[:20]] + [
        Outcome(c, "HTTP 503" if n % 2 else "ConnectError") for n, c in enumerate(claims[20:])
    ]
    commits: list[object] = []
    statements: list[str] = []

    def committed(connection: object) -> None:
        commits.append(connection)

    def executed(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "commit", committed)
    event.listen(engine, "before_cursor_execute", executed)

    more = outbox.exchange(outcomes, 30)

    event.remove(engine, "commit", committed)
    event.remove(engine, "before_cursor_execute", executed)
    assert len(more) == 30, "the rows not claimed yet, not those just failed"
    assert len(commits) == 1
    # The 20 delivered in one statement; the failures (each with its own back-off) one each;
    # the claim in two, however many it takes.
    assert len(statements) <= 1 + 10 + 2, statements
    assert outbox.pending() == 40
    assert outbox.claim(100) == [], "the failed wait out their back-off, the rest are leased"


def _past(minutes: int = 0) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes, seconds=1)
