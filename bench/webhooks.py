"""Webhook deliveries: a backlog drained by the service's own delivery worker.

    .venv/bin/python -m bench.webhooks [--events 600] [--receivers 5] [--slow-seconds 0.1]
                                       [--database sqlite|postgres]

Registers ``--receivers`` webhooks in a temporary service DB (a SQLite file; with ``--database
postgres`` a fresh database of the local PostgreSQL, installed and started when missing) and
enqueues ``--events`` events for every one of them, a millisecond apart as the change feed makes
them: 3,000 deliveries by default. Then the real ``DeliveryWorker``, as the service builds it
(its defaults, the webhook client with its pinned connections), sends them to local HTTP
receivers (the tests' receiver, which checks every signature, with keep-alive) until none is
pending. The first receiver answers each delivery only after ``--slow-seconds``, the others at
once. The receivers run in a process of their own, so their
work does not share the worker's interpreter.

Prints deliveries per second, the time to drain the whole backlog, and for each receiver how
many events it took, how many it was sent twice, and when its last one arrived: a slow receiver
should hold up its own deliveries and nobody else's. Needs no HAPI.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fhir_service import servicedb
from fhir_service.sync.webhook_deliveries import DeliveryWorker, Outbox, enqueue
from fhir_service.sync.webhook_registrations import Reach, TargetPolicy, WebhookRegistry
from fhir_service.sync.webhook_targets import webhook_client
from tests.postgres import fresh_database
from tests.webhook_receiver import Receiver

SECRET = "a-bench-secret-that-is-long-enough"
DRAIN_TIMEOUT = 900.0
Database = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Received:
    """What one receiver got: distinct events, repeats, deliveries whose signature did not
    verify, and when the last event came (epoch s)."""

    events: int
    repeats: int
    bad_signatures: int
    last: float


def _serve(delays: list[float], pipe: Connection) -> None:
    """The receivers' process: serve until asked, then send what each received (as tuples,
    which cross processes however this runs)."""
    servers = [Receiver(SECRET, delay=delay, keep_alive=True) for delay in delays]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    pipe.send([server.url for server in servers])
    pipe.recv()
    pipe.send([_received(server) for server in servers])


def _received(server: Receiver) -> tuple[int, int, int, float]:
    """The fields of its :class:`Received`."""
    with server.lock:
        counts = len(server.accepted), len(server.duplicates), len(server.bad_signatures)
        return (*counts, server.last)


@contextmanager
def _receivers(delays: list[float]) -> Iterator[tuple[list[str], Connection]]:
    """Receivers in a process of their own: their URLs, and the pipe that asks what they got."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(delays, theirs), daemon=True)
    process.start()
    try:
        urls: list[str] = ours.recv()
        yield urls, ours
    finally:
        process.terminate()
        process.join()


@contextmanager
def _database(kind: Database) -> Iterator[str]:
    if kind == "postgres":
        with fresh_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'service.db'}"


def _backlog(engine: Engine, urls: list[str], events: int) -> None:
    """Register a webhook per URL and enqueue ``events`` events for all of them."""
    registry = WebhookRegistry(engine, TargetPolicy(allow_http=True, allow_private_networks=True))
    webhooks = [registry.register(url, SECRET, owner="bench", reach=Reach()).id for url in urls]
    start = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        for number in range(events):
            event_id = str(uuid.uuid4())
            moment = start + timedelta(milliseconds=number)
            payload = {"id": event_id, "type": "CarePlan.updated", "n": number}
            enqueue(session, event_id, payload, webhooks, moment)


async def _drain(engine: Engine) -> float:
    """Run the worker until nothing is pending; the seconds it took."""
    outbox = Outbox(engine)
    async with webhook_client(allow_private_networks=True) as http:
        worker = DeliveryWorker(outbox, http)
        started = time.perf_counter()
        running = asyncio.create_task(worker.run_forever(asyncio.Event()))
        try:
            while await asyncio.to_thread(outbox.pending):
                if running.done():
                    running.result()
                if time.perf_counter() - started > DRAIN_TIMEOUT:
                    raise SystemExit(f"not drained within {DRAIN_TIMEOUT:.0f} s")
                await asyncio.sleep(0.05)
            return time.perf_counter() - started
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


def run(args: argparse.Namespace) -> None:
    """Fill the outbox, drain it, print the figures."""
    delays = [args.slow_seconds] + [0.0] * (args.receivers - 1)
    total = args.events * args.receivers
    with _receivers(delays) as (urls, pipe), _database(args.database) as url:
        engine = servicedb.make_engine(url)
        servicedb.migrate(engine)
        _backlog(engine, urls, args.events)
        began = time.time()
        seconds = asyncio.run(_drain(engine))
        engine.dispose()
        pipe.send("report")
        received = [Received(*fields) for fields in pipe.recv()]
    print(
        f"{total} deliveries ({args.events} events x {args.receivers} receivers, one answering "
        f"after {args.slow_seconds:g} s), service DB {args.database}: drained in {seconds:.1f} s, "
        f"{total / seconds:.0f} deliveries/s"
    )
    for number, (delay, got) in enumerate(zip(delays, received, strict=True), start=1):
        print(
            f"  receiver {number} ({'slow' if delay else 'fast'}): {got.events} events, "
            f"{got.repeats} sent twice, {got.bad_signatures} badly signed, last one "
            f"{got.last - began:.1f} s after the start"
        )
    fast = [got for delay, got in zip(delays, received, strict=True) if not delay]
    if fast:
        last = max(got.last for got in fast) - began
        count = sum(got.events for got in fast)
        print(f"  fast receivers done after {last:.1f} s: {count / last:.0f} deliveries/s")


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--receivers", type=int, default=5)
    parser.add_argument("--slow-seconds", type=float, default=0.1)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    if args.receivers < 1 or args.events < 1:
        parser.error("at least one receiver and one event")
    run(args)


if __name__ == "__main__":
    main()
