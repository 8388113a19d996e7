"""Housekeeping forgets only what is past keeping: old deliveries and changes, expired keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fhir_service.sync.housekeeping import KEEP, tidy
from fhir_service.sync.idempotency import IdempotencyStore
from fhir_service.sync.outbox import Outbox, enqueue
from fhir_service.sync.tables import Delivery, IdempotencyRecord, SeenChange
from fhir_service.sync.webhooks import TargetPolicy, WebhookRegistry


def test_old_delivered_events_old_changes_and_expired_keys_go_and_the_rest_stays(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    old = now - KEEP - timedelta(hours=1)
    webhook = WebhookRegistry(engine, TargetPolicy()).register(
        "https://ehr.example/a", "a-test-secret-that-is-long-enough"
    )
    with Session(engine) as session, session.begin():
        enqueue(session, "delivered-long-ago", {}, [webhook.id], old)
        enqueue(session, "delivered-today", {}, [webhook.id], now)
        enqueue(session, "never-delivered", {}, [webhook.id], old)
        for version, seen_at in (("1", old), ("2", now)):
            session.add(
                SeenChange(
                    resource_type="CarePlan",
                    resource_id="1",
                    version=version,
                    event_id=str(uuid.uuid4()),
                    seen_at=seen_at,
                )
            )
    outbox = Outbox(engine)
    claims = {c.event_id: c for c in outbox.claim(10, now=now)}
    outbox.delivered(claims["delivered-long-ago"], now=old)
    outbox.delivered(claims["delivered-today"], now=now)
    keys = IdempotencyStore(engine, ttl=timedelta(seconds=-1))
    keys.begin("scope", "expired", b"{}")
    IdempotencyStore(engine).begin("scope", "fresh", b"{}")

    forgotten = tidy(engine, now)

    assert forgotten == {
        "delivered events": 1,
        "seen changes": 1,
        "expired idempotency keys": 1,
    }
    with Session(engine) as session:
        left = set(session.scalars(select(Delivery.event_id)))
        versions = set(session.scalars(select(SeenChange.version)))
        keys_left = set(session.scalars(select(IdempotencyRecord.key)))
    assert left == {"delivered-today", "never-delivered"}
    assert versions == {"2"}
    assert keys_left == {"fresh"}
