"""``Idempotency-Key``: a retried request gets the first answer, never a second write.

A key is scoped (say, to the route and the caller) and remembers a hash of the request it came
with. The same key with the same request returns the stored answer; with another request it is
refused; while the first request is still running, a second one is told to wait. Keys expire.
The calls are blocking (SQLAlchemy); async callers run them in a thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_service.sync.tables import IdempotencyRecord

__all__ = [
    "IdempotencyKeyReusedError",
    "IdempotencyStore",
    "RequestInProgressError",
    "StoredResponse",
]

_RUNNING = "running"
_DONE = "done"


@dataclass(frozen=True)
class StoredResponse:
    """The answer the first request with this key got."""

    status: int
    body: str


class IdempotencyKeyReusedError(Exception):
    """The key was first used with a different request (answer 422)."""


class RequestInProgressError(Exception):
    """The first request with this key has not finished yet (answer 409, retry later)."""


class IdempotencyStore:
    """Idempotency keys in the service DB."""

    def __init__(self, engine: Engine, ttl: timedelta = timedelta(hours=24)) -> None:
        self.engine = engine
        self.ttl = ttl

    def begin(self, scope: str, key: str, request: bytes) -> StoredResponse | None:
        """Claim ``key`` for this request; the stored answer if it was answered before.

        ``None`` means: go ahead, then :meth:`complete` (or :meth:`abandon` on failure).
        """
        digest = hashlib.sha256(request).hexdigest()
        now = datetime.now(UTC)
        for _ in range(2):
            try:
                with Session(self.engine) as session, session.begin():
                    session.add(
                        IdempotencyRecord(
                            scope=scope,
                            key=key,
                            request_hash=digest,
                            state=_RUNNING,
                            created_at=now,
                            expires_at=now + self.ttl,
                        )
                    )
                return None
            except IntegrityError:
                existing = self._existing(scope, key)
            if existing is None or _aware(existing.expires_at) <= now:
                self._forget(scope, key, only_expired_before=now)
                continue
            if existing.request_hash != digest:
                raise IdempotencyKeyReusedError(
                    f"Idempotency-Key {key!r} was used with a different request"
                )
            if existing.state == _RUNNING or existing.response_status is None:
                raise RequestInProgressError(f"the request with Idempotency-Key {key!r} is running")
            return StoredResponse(existing.response_status, existing.response_body or "")
        raise RequestInProgressError(f"Idempotency-Key {key!r} is being claimed concurrently")

    def complete(self, scope: str, key: str, status: int, body: str) -> None:
        """Store the answer of the request that claimed ``key``."""
        with Session(self.engine) as session, session.begin():
            record = session.get(IdempotencyRecord, (scope, key))
            if record is not None:
                record.state = _DONE
                record.response_status = status
                record.response_body = body

    def abandon(self, scope: str, key: str) -> None:
        """Release ``key`` after a failure that wrote nothing, so the client may retry it."""
        self._forget(scope, key)

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete expired keys; returns how many."""
        moment = now or datetime.now(UTC)
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= moment)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def _existing(self, scope: str, key: str) -> IdempotencyRecord | None:
        with Session(self.engine) as session:
            return session.scalar(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
                )
            )

    def _forget(self, scope: str, key: str, only_expired_before: datetime | None = None) -> None:
        with Session(self.engine) as session, session.begin():
            statement = delete(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
            )
            if only_expired_before is not None:
                statement = statement.where(IdempotencyRecord.expires_at <= only_expired_before)
            session.execute(statement)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
