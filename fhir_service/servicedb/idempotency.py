"""``Idempotency-Key``: a retried request gets the first answer, never a second write.

A key is scoped (say, to the route and the caller) and remembers a hash of the request it came
with. The same key with the same request returns the stored answer; with another request it is
refused; while the first request is still running, a second one is told to wait. Keys expire.
The calls are blocking (SQLAlchemy); async callers run them in a thread.

A request that ended without an answer leaves its key to be taken over by the next request with
it (:class:`Reclaimed`), which must find out what the first one wrote: the key's request ran
into a write whose outcome is unknown (:meth:`IdempotencyStore.unknown`), or the instance running
it died (killed mid-request: it names itself as the key's ``owner`` and stopped beating, see
``fhir_service.servicedb.instances``), or it could not be settled and has been running for longer
than any request runs. A key never stays locked for its 24 hours by a request nobody runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_service.errors import BusyError, UnprocessableError
from fhir_service.servicedb.instances import DEAD_AFTER, alive
from fhir_service.servicedb.tables import IdempotencyRecord

__all__ = [
    "LONGEST_REQUEST",
    "IdempotencyKeyReusedError",
    "IdempotencyStore",
    "Reclaimed",
    "RequestInProgressError",
    "StoredResponse",
]

LONGEST_REQUEST = timedelta(minutes=10)
"""Far longer than any request runs (each HAPI call times out in seconds)."""

_RUNNING = "running"
_DONE = "done"
_UNKNOWN = "unknown"


@dataclass(frozen=True)
class StoredResponse:
    """The answer the first request with this key got."""

    status: int
    body: str


@dataclass(frozen=True)
class Reclaimed:
    """The key is this request's now, but an earlier request with it ended without an answer:
    it may have written. Its writes carry the key's tag; look for them before answering."""


class IdempotencyKeyReusedError(UnprocessableError):
    """The key was first used with a different request."""

    title = "Idempotency-Key reused"


class RequestInProgressError(BusyError):
    """The first request with this key has not finished yet: retry after the pause."""

    title = "Request in progress"


class IdempotencyStore:
    """Idempotency keys in the service DB."""

    def __init__(self, engine: Engine, ttl: timedelta = timedelta(hours=24)) -> None:
        self.engine = engine
        self.ttl = ttl

    def begin(
        self, scope: str, key: str, request: bytes, owner: str | None = None
    ) -> StoredResponse | Reclaimed | None:
        """Claim ``key`` for this request, run by instance ``owner``.

        ``None``: go ahead, then :meth:`complete` (:meth:`abandon` after a failure that wrote
        nothing, :meth:`unknown` after one that may have written). A
        :class:`StoredResponse`: the answer to give again. :class:`Reclaimed`: go ahead, but
        an earlier request with the key may have written.
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
                            owner=owner,
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
            if existing.state == _DONE and existing.response_status is not None:
                return StoredResponse(existing.response_status, existing.response_body or "")
            if self._take_over(scope, key, owner, now):
                return Reclaimed()
            raise RequestInProgressError(f"the request with Idempotency-Key {key!r} is running")
        raise RequestInProgressError(f"Idempotency-Key {key!r} is being claimed concurrently")

    def unknown(self, scope: str, key: str) -> None:
        """The request that claimed ``key`` ends without knowing whether its write was made:
        the next request with the key takes it over and finds out."""
        self._set(scope, key, state=_UNKNOWN, owner=None)

    def complete(self, scope: str, key: str, status: int, body: str) -> None:
        """Store the answer of the request that claimed ``key``."""
        self._set(scope, key, state=_DONE, owner=None, response_status=status, response_body=body)

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

    def _take_over(self, scope: str, key: str, owner: str | None, now: datetime) -> bool:
        """Claim a key whose request ended unanswered: marked unknown, running (for longer
        than an instance takes to be missed) on an instance taken for dead, or running for
        longer than any request runs. One statement, so of two retries only one takes it."""
        running = IdempotencyRecord.state == _RUNNING
        unanswered = (
            (IdempotencyRecord.state == _UNKNOWN)
            | (
                running
                & (IdempotencyRecord.created_at <= now - DEAD_AFTER)
                & (IdempotencyRecord.owner.is_(None) | IdempotencyRecord.owner.not_in(alive(now)))
            )
            # No request runs this long: its instance lives but lost track of the key (its
            # database failed as it would settle it), so the key must not wait for it.
            | (running & (IdempotencyRecord.created_at <= now - LONGEST_REQUEST))
        )
        with Session(self.engine) as session, session.begin():
            taken = session.execute(
                update(IdempotencyRecord)
                .where(
                    IdempotencyRecord.scope == scope,
                    IdempotencyRecord.key == key,
                    unanswered,
                )
                .values(state=_RUNNING, owner=owner, created_at=now)
                .execution_options(synchronize_session=False)
            )
        return getattr(taken, "rowcount", 0) == 1

    def _set(self, scope: str, key: str, **values: object) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

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
