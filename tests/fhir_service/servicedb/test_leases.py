"""The leased outbox both audit records and webhook deliveries are: two instances claiming at
once never take the same item, whichever outbox it is."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from fhir_service import servicedb
from fhir_service.audit.outbox import AuditOutbox
from fhir_service.servicedb.leases import LeasedOutbox
from fhir_service.sync.webhook_deliveries import Outbox
from tests.fhir_service.audit.test_outbox import _recorded
from tests.fhir_service.sync.test_webhook_deliveries import _events, _webhook

# Each outbox: how to fill it with 200 items (their ids), how to open it, a claim's id.
_OUTBOXES: dict[str, tuple[Callable[[Engine], list[str]], type[LeasedOutbox[Any]], str]] = {
    "audit-records": (lambda engine: _recorded(engine, 200), AuditOutbox, "id"),
    "webhook-deliveries": (
        lambda engine: _events(engine, _webhook(engine), 200),
        Outbox,
        "event_id",
    ),
}


@pytest.mark.parametrize("kind", sorted(_OUTBOXES))
def test_two_instances_claiming_at_once_never_take_the_same_item(engine: Engine, kind: str) -> None:
    fill, outbox_of, id_of = _OUTBOXES[kind]
    ids = fill(engine)
    second_engine = servicedb.make_engine(engine.url.render_as_string(hide_password=False))
    taken: list[list[Any]] = [[], []]
    start = threading.Barrier(2)

    def drain(index: int, instance: Engine) -> None:
        outbox = outbox_of(instance)
        start.wait()
        for _ in range(2000):
            taken[index] += outbox.claim(3)
            if len(taken[0]) + len(taken[1]) >= len(ids):
                return
            time.sleep(0.005)  # what a worker does between claims: send or write them

    threads = [
        threading.Thread(target=drain, args=(0, engine)),
        threading.Thread(target=drain, args=(1, second_engine)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    second_engine.dispose()

    claimed = [getattr(c, id_of) for c in taken[0] + taken[1]]
    assert sorted(claimed) == sorted(ids)
    assert taken[0], "the first instance took part"
    assert taken[1], "the second instance took part"
