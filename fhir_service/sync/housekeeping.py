"""Forgetting what is long done: delivered events, written audit events, seen changes, expired
keys, instances long stopped.

Delivered events and seen changes are kept a week for operators to look into; a seen change only
has to outlive the change feed's overlap (seconds), so a week is far on the safe side. Audit events
are HAPI's to keep once written; the service's copy goes a week later.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fhir_service.servicedb.idempotency import IdempotencyStore
from fhir_service.servicedb.tables import AuditRecord, Delivery, Instance, SeenChange

__all__ = ["KEEP", "tidy", "tidy_forever"]

_log = logging.getLogger(__name__)

KEEP = timedelta(days=7)


def tidy(engine: Engine, now: datetime | None = None) -> dict[str, int]:
    """Delete what is past keeping; returns how many rows of each kind went."""
    moment = now or datetime.now(UTC)
    with Session(engine) as session, session.begin():
        delivered = session.execute(
            delete(Delivery).where(
                Delivery.delivered_at.is_not(None), Delivery.delivered_at < moment - KEEP
            )
        )
        audited = session.execute(
            delete(AuditRecord).where(
                AuditRecord.written_at.is_not(None), AuditRecord.written_at < moment - KEEP
            )
        )
        seen = session.execute(delete(SeenChange).where(SeenChange.seen_at < moment - KEEP))
        # Every start is a new instance; one silent for a week is long gone, its claims taken.
        stopped = session.execute(delete(Instance).where(Instance.heartbeat_at < moment - KEEP))
    return {
        "delivered events": int(getattr(delivered, "rowcount", 0) or 0),
        "written audit events": int(getattr(audited, "rowcount", 0) or 0),
        "seen changes": int(getattr(seen, "rowcount", 0) or 0),
        "stopped instances": int(getattr(stopped, "rowcount", 0) or 0),
        "expired idempotency keys": IdempotencyStore(engine).purge_expired(moment),
    }


async def tidy_forever(
    engine: Engine, schema_ready: asyncio.Event, every_seconds: float = 3600.0
) -> None:
    """Tidy once the schema is there, then every ``every_seconds``, until cancelled."""
    await schema_ready.wait()
    while True:
        try:
            forgotten = await asyncio.to_thread(tidy, engine)
        except SQLAlchemyError as exc:
            _log.warning("tidying the service DB failed", extra={"reason": str(exc)})
        else:
            if any(forgotten.values()):
                _log.info("tidied the service DB", extra={"forgotten": forgotten})
        await asyncio.sleep(every_seconds)
