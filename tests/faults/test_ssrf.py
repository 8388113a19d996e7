"""Nothing outside the walls: webhook deliveries never connect to the service's own neighbours.

A webhook stored before the policy refused its target, or whose name resolves inwards by the time
it is delivered (DNS rebinding), aims at loopback here in every spelling an attacker used:
decimal, octal, hex and short IPv4, a trailing dot, a name of this machine. A raw TCP listener on
127.0.0.1 counts every connection it accepts; the delivery worker, with the client the
application builds under the default policy, must leave it at zero, record a failed delivery that
names the policy, and try again only after a back-off, with no ERROR logged.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fhir_service.servicedb.tables import Delivery, Webhook
from fhir_service.settings import Settings
from fhir_service.sync.webhook_deliveries import DeliveryWorker, Outbox, enqueue
from fhir_service.sync.webhook_targets import webhook_client
from tests.fhir_service.conftest import engine  # noqa: F401 - the service DB, both kinds

SECRET = "a-test-secret-that-is-long-enough"
TARGETS = (
    "https://127.0.0.1:{port}/events",
    "http://127.0.0.1:{port}/events",
    "https://2130706433:{port}/events",
    "https://0177.0.0.1:{port}/events",
    "https://0x7f000001:{port}/events",
    "https://127.1:{port}/events",
    "https://localhost.:{port}/events",
    "https://[::ffff:127.0.0.1]:{port}/events",
    "https://{hostname}:{port}/events",
)


class _Listener:
    """A raw TCP listener on 127.0.0.1: accepts, counts and closes every connection."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.05)
        self.port: int = self.socket.getsockname()[1]
        self.accepted = 0
        self.stopped = threading.Event()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            connection.close()


@contextmanager
def _listening() -> Iterator[_Listener]:
    listener = _Listener()
    thread = threading.Thread(target=listener.serve, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        listener.stopped.set()
        thread.join()
        listener.socket.close()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stored_webhooks(db: Engine, urls: list[str]) -> list[str]:
    """Webhooks put straight in the service DB, as if registered before the policy refused them."""
    ids = [str(uuid.uuid4()) for _ in urls]
    with Session(db) as session, session.begin():
        for webhook_id, url in zip(ids, urls, strict=True):
            session.add(
                Webhook(
                    id=webhook_id,
                    url=url,
                    secret=SECRET,
                    created_at=datetime.now(UTC),
                    owner="ehr",
                )
            )
    return ids


async def test_no_delivery_connects_to_loopback_in_any_spelling(
    engine: Engine,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert Settings.model_fields["webhook_allow_private_networks"].default is False
    event_id = str(uuid.uuid4())
    with _listening() as listener:
        urls = [t.format(port=listener.port, hostname=socket.gethostname()) for t in TARGETS]
        webhook_ids = _stored_webhooks(engine, urls)
        with Session(engine) as session, session.begin():
            enqueue(session, event_id, {"id": event_id}, webhook_ids, datetime.now(UTC))
        outbox = Outbox(engine)
        before = datetime.now(UTC)
        with caplog.at_level(logging.INFO, logger="fhir_service"):
            async with webhook_client(allow_private_networks=False) as client:
                worker = DeliveryWorker(outbox, client)
                tried = await worker.run_once()
                again = await worker.run_once()

        assert listener.accepted == 0
    assert tried == len(TARGETS)
    assert again == 0  # each failed send waits out its back-off
    with Session(engine) as session:
        rows = {row.webhook_id: row for row in session.scalars(select(Delivery))}
    for webhook_id, url in zip(webhook_ids, urls, strict=True):
        row = rows[webhook_id]
        assert row.delivered_at is None, url
        assert row.attempts == 1, url
        assert (row.last_error or "").startswith("refused by the webhook target policy"), url
        assert _aware(row.next_attempt_at) >= before + outbox.first_retry / 2, url
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(TARGETS)
    assert all("webhook target policy" in getattr(r, "reason", "") for r in warnings)
    assert all(r.exc_info is None for r in warnings)


async def test_the_listener_counts_what_reaches_it_when_private_networks_are_allowed() -> None:
    # The zero above means something: the same listener, the same client, allowed to go there.
    with _listening() as listener:
        async with webhook_client(allow_private_networks=True) as client:
            with pytest.raises(httpx.TransportError):
                await client.post(f"http://127.0.0.1:{listener.port}/events", content=b"{}")

        assert listener.accepted == 1
