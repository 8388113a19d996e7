"""Housekeeping forgets only what is past keeping: old deliveries, audit events, changes, keys."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fhir_service.audit.outbox import AuditOutbox
from fhir_service.audit.outbox import record as record_access
from fhir_service.audit.records import AccessRecord, Caller, Interaction, Outcome
from fhir_service.servicedb.idempotency import IdempotencyStore
from fhir_service.servicedb.instances import ThisInstance
from fhir_service.servicedb.tables import (
    AuditRecord,
    Delivery,
    IdempotencyRecord,
    Instance,
    SeenChange,
)
from fhir_service.sync.housekeeping import KEEP, tidy
from fhir_service.sync.webhook_deliveries import Outbox, enqueue
from fhir_service.sync.webhook_registrations import Reach, TargetPolicy, WebhookRegistry


def _access(record_id: str) -> AccessRecord:
    return AccessRecord(
        id=record_id,
        recorded=datetime.now(UTC),
        interaction=Interaction.READ,
        outcome=Outcome.SUCCESS,
        description="read contract",
        caller=Caller(),
        request_id=record_id,
        method="GET",
        route="/contracts",
    )


def test_what_is_long_done_goes_and_the_rest_stays(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    old = now - KEEP - timedelta(hours=1)
    # There is no DNS here: the receiver's name resolves to a public address (example.com's, once).
    public = TargetPolicy(resolver=lambda host, port: [ip_address("93.184.215.14")])
    webhook = WebhookRegistry(engine, public).register(
        "https://ehr.example/a", "a-test-secret-that-is-long-enough", owner="ehr", reach=Reach()
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
    for record_id in ("written-long-ago", "written-today", "never-written"):
        record_access(engine, _access(record_id))
    audit = AuditOutbox(engine)
    audit.written(["written-long-ago"], now=old)
    audit.written(["written-today"], now=now)
    keys = IdempotencyStore(engine, ttl=timedelta(seconds=-1))
    keys.begin("scope", "expired", b"{}")
    IdempotencyStore(engine).begin("scope", "fresh", b"{}")
    stopped, running = ThisInstance(engine, "stopped"), ThisInstance(engine, "running")
    stopped.beat(old)
    running.beat(now)

    forgotten = tidy(engine, now)

    assert forgotten == {
        "delivered events": 1,
        "written audit events": 1,
        "seen changes": 1,
        "expired idempotency keys": 1,
        "stopped instances": 1,
    }
    with Session(engine) as session:
        left = set(session.scalars(select(Delivery.event_id)))
        versions = set(session.scalars(select(SeenChange.version)))
        keys_left = set(session.scalars(select(IdempotencyRecord.key)))
        audited = set(session.scalars(select(AuditRecord.id)))
        instances = set(session.scalars(select(Instance.id)))
    assert left == {"delivered-today", "never-delivered"}
    assert versions == {"2"}
    assert keys_left == {"fresh"}
    assert audited == {"written-today", "never-written"}
    assert instances == {"running"}
