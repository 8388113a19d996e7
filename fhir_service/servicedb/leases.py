"""The leased outbox both outboxes are: rows in the service DB that workers of any instance claim
for a while, do, and then mark done or due again later.

A row is due when its ``next_attempt_at`` has passed and it is not done. Workers claim due rows
with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite has one writer anyway) and move
them a lease ahead before working on them, so two instances never work on one row at once, and
a worker that dies mid-way leaves its rows due again once the lease runs out. A failure makes the
row due again after a jittered exponential back-off, without limit.

`LeasedOutbox` holds that once; an outbox says which rows are due and what a claim of one holds
(`fhir_service.sync.webhook_deliveries`, `fhir_service.audit.outbox`).
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Engine, Executable, and_, func, inspect, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

__all__ = ["LeasedOutbox"]

ClaimT = TypeVar("ClaimT")

_log = logging.getLogger(__name__)


class LeasedOutbox(ABC, Generic[ClaimT]):
    """Claim due rows for one lease, mark them done, or due again after a back-off; the calls
    block (run them in a thread)."""

    table: Any
    """The rows' mapped class; it has ``next_attempt_at``, ``attempts`` and ``last_error``."""
    longest_wait = timedelta(minutes=10)
    """The back-off's cap, unless the outbox is made with another (``max_retry``)."""

    def __init__(
        self,
        engine: Engine,
        *,
        lease: timedelta = timedelta(seconds=60),
        first_retry: timedelta = timedelta(seconds=2),
        max_retry: timedelta | None = None,
    ) -> None:
        self.engine = engine
        self.lease = lease
        self.first_retry = first_retry
        self.max_retry = max_retry or self.longest_wait

    @property
    @abstractmethod
    def done_at(self) -> Any:
        """The column saying when a row was done; None while it waits."""

    @abstractmethod
    def _due(self, moment: datetime, limit: int) -> Executable:
        """Up to ``limit`` rows due at ``moment``, oldest due first, locked for update; each
        result row starts with the outbox's mapped row."""

    @abstractmethod
    def _key(self, row: Any) -> Sequence[ColumnElement[bool]]:
        """The conditions that pick ``row`` (a mapped row) alone."""

    @abstractmethod
    def _claim_of(self, result: Any) -> ClaimT:
        """The claim of one result row of `_due`."""

    def claim(self, limit: int, now: datetime | None = None) -> list[ClaimT]:
        """Take up to ``limit`` due rows for this worker, for one lease."""
        moment = now or datetime.now(UTC)
        try:
            with Session(self.engine) as session, session.begin():
                return self._take(session, self._due(moment, limit), moment)
        except OperationalError as exc:
            # SQLite answers "database is locked" to the second of two concurrent claimants.
            _log.info(
                "outbox claim lost a race; trying later",
                extra={"outbox": self.table.__tablename__, "reason": str(exc)},
            )
            return []

    def _take(self, session: Session, due: Executable, moment: datetime) -> list[ClaimT]:
        """Move the rows ``due`` selects a lease ahead of ``moment``, in ``session``'s
        transaction; the claims of those this claimant got.

        One statement leases them all: a claim costs two round trips however many rows it takes.
        """
        results = session.execute(due).all()
        if not results:
            return []
        # The guard on each row's old due time makes the claim safe where SKIP LOCKED is not
        # there (SQLite): only one claimant's update matches a row.
        taken = session.execute(
            update(self.table)
            .where(
                or_(
                    *(
                        and_(*self._key(row), self.table.next_attempt_at == row.next_attempt_at)
                        for row, *_ in results
                    )
                )
            )
            .values(next_attempt_at=moment + self.lease)
            .returning(*inspect(self.table).primary_key)
            .execution_options(synchronize_session=False)
        )
        got = {tuple(key) for key in taken}
        return [self._claim_of(result) for result in results if _identity(result[0]) in got]

    def backoff(self, attempts: int) -> timedelta:
        """The wait after ``attempts`` failures: doubling from ``first_retry``, capped at
        ``max_retry``, and a random half to all of it, so that rows that failed together (an
        outage) come back spread."""
        ceiling = min(self.max_retry, self.first_retry * (1 << min(attempts - 1, 30)))
        jitter: float = random.uniform(0.5, 1.0)  # noqa: S311 - spreads retries, not a secret
        return ceiling * jitter

    def pending(self) -> int:
        """How many rows are not done yet."""
        with Session(self.engine) as session:
            count = session.scalar(
                select(func.count()).select_from(self.table).where(self.done_at.is_(None))
            )
            return int(count or 0)

    def _done(
        self,
        key: Sequence[ColumnElement[bool]],
        attempts: Any,
        now: datetime | None,
        session: Session | None = None,
    ) -> None:
        """Mark the waiting rows ``key`` picks done; ``attempts`` is their count of attempts
        now (a number, or an expression of the column). In ``session``'s transaction when
        given, else in one of its own."""
        values = {self.done_at.key: now or datetime.now(UTC), "attempts": attempts}
        self._set([(key, values)], session)

    def _due_again(
        self,
        failures: Sequence[tuple[Sequence[ColumnElement[bool]], int]],
        error: str,
        now: datetime | None,
        session: Session | None = None,
    ) -> None:
        """Make each waiting row (its key, and its count of attempts now) due again after the
        back-off of that many failures; in one transaction, ``session``'s when given."""
        moment = now or datetime.now(UTC)
        self._set(
            [
                (
                    key,
                    {
                        "attempts": attempts,
                        "next_attempt_at": moment + self.backoff(attempts),
                        "last_error": error[:500],
                    },
                )
                for key, attempts in failures
            ],
            session,
        )

    def _set(
        self,
        changes: Sequence[tuple[Sequence[ColumnElement[bool]], dict[str, Any]]],
        session: Session | None,
    ) -> None:
        if session is None:
            with Session(self.engine) as own, own.begin():
                self._set(changes, own)
            return
        for key, values in changes:
            session.execute(
                update(self.table)
                .where(*key, self.done_at.is_(None))
                .values(**values)
                .execution_options(synchronize_session=False)
            )


def _identity(row: Any) -> tuple[Any, ...] | None:
    """The primary key of a mapped row the session loaded."""
    identity: tuple[Any, ...] | None = inspect(row).identity
    return identity
