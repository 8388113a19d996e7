"""The instances of the service sharing one database, and which of them are alive.

Some work is claimed by the instance doing it and must not be done twice while it runs: a request
with an ``Idempotency-Key``, and the audit record of a write whose outcome is not known yet. An
instance killed mid-request (``kill -9``, a lost node) never finishes that work, so claims name
their instance, each instance beats a heartbeat into the ``instances`` table, and a claim whose
instance stopped beating is taken over: the key by the client's retry, the audit record by the
audit writer, which sends it saying the outcome is unknown. An instance cut off from the database
cannot beat either; what it claimed is taken over as if it had died, which is safe because every
write it could still make is conditional on the versions it read.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Select, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fhir_service.servicedb.tables import Instance

__all__ = ["DEAD_AFTER", "HEARTBEAT", "ThisInstance", "alive"]

_log = logging.getLogger(__name__)

HEARTBEAT = timedelta(seconds=5)
"""How often an instance beats."""

DEAD_AFTER = timedelta(seconds=20)
"""An instance that has not beaten for this long is taken for dead: four missed beats."""


class ThisInstance:
    """This process among the instances: its id, and the heartbeat that says it is alive."""

    def __init__(self, engine: Engine, instance_id: str | None = None) -> None:
        self.engine = engine
        self.id = instance_id or str(uuid.uuid4())

    def beat(self, now: datetime | None = None) -> None:
        """Say this instance is alive; blocks (run it in a thread)."""
        moment = now or datetime.now(UTC)
        with Session(self.engine) as session, session.begin():
            beaten = session.execute(
                update(Instance)
                .where(Instance.id == self.id)
                .values(heartbeat_at=moment)
                .execution_options(synchronize_session=False)
            )
            if getattr(beaten, "rowcount", 0) == 0:
                session.add(Instance(id=self.id, started_at=moment, heartbeat_at=moment))

    async def beat_forever(self, schema_ready: asyncio.Event) -> None:
        """Beat every :data:`HEARTBEAT` once the schema is there, until cancelled."""
        await schema_ready.wait()
        while True:
            try:
                await asyncio.to_thread(self.beat)
            except SQLAlchemyError as exc:
                # Others will take this instance's claims over; its conditional writes keep that
                # safe. Said loudly, since it also means the database is failing.
                _log.warning("heartbeat failed", extra={"reason": f"{type(exc).__name__}: {exc}"})
            await asyncio.sleep(HEARTBEAT.total_seconds())


def alive(now: datetime) -> Select[str]:
    """The ids of the instances that beat within :data:`DEAD_AFTER` of ``now``: a subquery for
    conditions on the owner of a claim."""
    return select(Instance.id).where(Instance.heartbeat_at >= now - DEAD_AFTER)
