"""The audit outbox: every AuditEvent is kept in the service DB until HAPI has it.

:func:`keep` stores the event of an access before the service answers it, so an answered
request is always audited even while HAPI is down. A request is recorded before its answer can
leave, and a write before it can reach HAPI (:class:`Opened`, an event saying its outcome is
unknown, owned by the instance running it), and completed when its answer is known
(:class:`Completed`): a write is never made unrecorded, and a request whose instance died
mid-way still reaches HAPI, as an access of unknown outcome (:meth:`AuditOutbox.recover`).
:class:`AuditRecorder` keeps the records of concurrent requests in one transaction.
:class:`AuditWriter` moves due events into HAPI in batches, each one ``transaction`` Bundle of
``PUT AuditEvent/<id>`` entries: the id is the record's, so a batch repeated after a lost answer
stores each event once (HAPI makes no new version of an unchanged resource). HAPI takes a
transaction whole or not at all; one it refuses is sent again as a ``batch``, whose entries HAPI
takes or refuses one by one. Entries HAPI refused, and whole batches it could not take, come back
after a jittered exponential back-off (a batch HAPI cannot parse is sent again event by event, so
one bad event does not hold up the rest); rows are claimed with leases as in the webhook outbox
(``fhir_service.sync.webhook_deliveries``), so several instances can write without sending a row
twice at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Engine,
    Executable,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_service import wire
from fhir_service.audit.events import audit_event
from fhir_service.audit.records import AccessRecord
from fhir_service.fhir import HapiClient, HapiError, HapiRequestError, HapiUnavailableError
from fhir_service.servicedb.instances import DEAD_AFTER, alive
from fhir_service.servicedb.leases import LeasedOutbox
from fhir_service.servicedb.tables import AuditRecord
from fhir_service.waits import woken

__all__ = [
    "Answered",
    "AuditClaim",
    "AuditOutbox",
    "AuditRecorder",
    "AuditWriter",
    "Completed",
    "Keeping",
    "Opened",
    "complete",
    "keep",
    "open_record",
    "record",
]

_log = logging.getLogger(__name__)


_OPEN_FOR = timedelta(days=1)
"""When an open record would fall due if nothing completed or recovered it: never, in practice;
the date only keeps it out of the writer's claims meanwhile."""


@dataclass(frozen=True, slots=True)
class Opened:
    """The record of a request about to run, its outcome unknown; ``owner`` is the instance
    running it. A :class:`Completed` gives it its outcome."""

    access: AccessRecord
    owner: str


@dataclass(frozen=True, slots=True)
class Completed:
    """The outcome of the record opened with ``access.id``; due for HAPI at once.

    Should the writer have sent it as unknown meanwhile (its instance was taken for dead), it
    goes again: HAPI keeps the outcome as the event's newer version.
    """

    access: AccessRecord


@dataclass(frozen=True, slots=True)
class Answered:
    """The record of a request answered without one opened first (a refusal); due at once."""

    access: AccessRecord


Keeping = Opened | Completed | Answered


def keep(engine: Engine, keepings: Sequence[Keeping]) -> None:
    """Store ``keepings`` in one transaction: all of them, or none. Blocks (run it in a thread).

    Core statements, not the ORM: every answered request waits for its rows, and the ORM's unit
    of work costs more than the statements.
    """
    now = datetime.now(UTC)
    new = [
        {
            "id": k.access.id,
            "resource": _json(k.access),
            "created_at": now,
            "next_attempt_at": now + _OPEN_FOR if isinstance(k, Opened) else now,
            "owner": k.owner if isinstance(k, Opened) else None,
        }
        for k in keepings
        if not isinstance(k, Completed)
    ]
    outcomes = [
        {"record_id": k.access.id, "outcome_resource": _json(k.access)}
        for k in keepings
        if isinstance(k, Completed)
    ]
    with engine.begin() as connection:
        if new:
            connection.execute(_INSERT, new)
        if outcomes:
            connection.execute(_COMPLETE, [{**o, "now": now} for o in outcomes])


_RECORDS = cast(Table, AuditRecord.__table__)
# Built once, on the table rather than the mapped class: per call, building the statements and
# taking SQLAlchemy's ORM path for them cost more CPU than the commit, on every request's path.
_INSERT = insert(_RECORDS)
_COMPLETE = (
    update(_RECORDS)
    .where(_RECORDS.c.id == bindparam("record_id"))
    .values(
        resource=bindparam("outcome_resource"),
        next_attempt_at=bindparam("now"),
        owner=None,
        written_at=None,
    )
)


def record(engine: Engine, access: AccessRecord) -> None:
    """Store the AuditEvent of ``access``, due for HAPI at once; blocks (run it in a thread)."""
    keep(engine, [Answered(access)])


def open_record(engine: Engine, access: AccessRecord, owner: str) -> None:
    """Store the event of a request that is about to run, its outcome unknown; ``owner`` is the
    instance running it. Blocks (run it in a thread). :func:`complete` gives it its outcome."""
    keep(engine, [Opened(access, owner)])


def complete(engine: Engine, access: AccessRecord) -> None:
    """Give the record opened with ``access.id`` its outcome; due for HAPI at once."""
    keep(engine, [Completed(access)])


_Group = list[tuple[Keeping, asyncio.Future[None] | None]]
"""Records kept in one transaction, each with the future its request waits on (None: an
outcome nobody waits for)."""


class AuditRecorder:
    """Keeps the records of requests running at the same time in one transaction (a group
    commit), each request still waiting until its own is kept.

    One request at a time, a record costs one commit, as :func:`keep` alone would, and that
    commit begins in its thread as the record is asked for. Under load, the requests that
    arrive while a commit runs share the next one: one flush to disk for all, and no two of
    them contending for SQLite's one writer (a writer that finds it taken sleeps in steps of
    milliseconds before it tries again).

    An outcome (:meth:`keep_soon`) waits for the next commit, at most ``linger_seconds``: the
    record that the request happened is kept already, and the next request's record, which
    comes as the answer of this one leaves, takes it along. Before, it cost a commit of its
    own, which the next request's record waited behind. ``due`` is called after each commit
    that made records due for HAPI.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        linger_seconds: float = 0.05,
        due: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.linger_seconds = linger_seconds
        self._due = due
        # A keeping with no future is an outcome nobody waits for (keep_soon).
        self._waiting: _Group = []
        self._committing: asyncio.Task[None] | None = None
        self._lingering: asyncio.TimerHandle | None = None

    async def keep(self, keeping: Keeping) -> None:
        """Return once ``keeping`` is stored; raise what storing it raised if it could not be."""
        stored = asyncio.get_running_loop().create_future()
        self._waiting.append((keeping, stored))
        self._commit_soon()
        # Shielded: a request that goes away still has its record kept (a cancelled waiter
        # must not cancel the others' commit).
        await asyncio.shield(stored)

    def keep_soon(self, keeping: Completed) -> None:
        """Keep the outcome ``keeping`` with the next commit, within ``linger_seconds``, and
        return at once. Should it not be kept (the database fails, the process dies), its
        record goes to HAPI as it was opened, saying the outcome is unknown."""
        self._waiting.append((keeping, None))
        if self._lingering is None and not self._busy():
            loop = asyncio.get_running_loop()
            self._lingering = loop.call_later(self.linger_seconds, self._commit_soon)

    async def flush(self) -> None:
        """Keep every record waiting now, outcomes too (as the service stops)."""
        self._commit_soon()
        if self._committing is not None:
            await asyncio.shield(self._committing)

    def _busy(self) -> bool:
        return self._committing is not None and not self._committing.done()

    def _commit_soon(self) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
        if self._waiting and not self._busy():
            group, self._waiting = self._waiting, []
            self._committing = asyncio.create_task(self._commit_waiting(group, self._start(group)))

    def _start(self, group: _Group) -> asyncio.Future[None]:
        # In the worker thread from now, not from the task's first step: a request runs on
        # until it first waits (a create parses and maps its contract, some milliseconds),
        # and its record is to be kept meanwhile, not only once its first write waits for it.
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, keep, self.engine, [k for k, _ in group])

    async def _commit_waiting(self, group: _Group, started: asyncio.Future[None]) -> None:
        while True:
            try:
                await started
            except IntegrityError:
                # The transaction stored none of them, for one's own fault (a clash of ids):
                # alone, only that one fails.
                for one in group:
                    await self._commit_alone(*one)
            except Exception as exc:
                # The database's fault: each would fail alone too, and trying them one by one
                # would keep the last waiting for every other's failure.
                for _, stored in group:
                    _settle(stored, exc)
            else:
                for _, stored in group:
                    _settle(stored, None)
            if self._due is not None and any(not isinstance(k, Opened) for k, _ in group):
                self._due()
            if not self._waiting:
                return
            group, self._waiting = self._waiting, []
            started = self._start(group)

    async def _commit_alone(self, keeping: Keeping, stored: asyncio.Future[None] | None) -> None:
        try:
            await asyncio.to_thread(keep, self.engine, [keeping])
        except Exception as exc:
            _settle(stored, exc)
        else:
            _settle(stored, None)


def _settle(stored: asyncio.Future[None] | None, error: Exception | None) -> None:
    """Tell the request waiting for its record how keeping it went; an outcome nobody waits
    for is logged when it could not be kept."""
    if stored is None:
        if error is not None:
            _log.error(
                "audit outcome could not be kept; it goes out saying the outcome is unknown",
                exc_info=error,
            )
    elif error is None:
        stored.set_result(None)
    else:
        stored.set_exception(error)


def _json(access: AccessRecord) -> str:
    return wire.dumps(audit_event(access)).decode()


@dataclass(frozen=True)
class AuditClaim:
    """An AuditEvent this writer has claimed for one lease; ``resource`` is its JSON."""

    id: str
    resource: str
    attempts: int


class AuditOutbox(LeasedOutbox[AuditClaim]):
    """Claim, complete and reschedule audit records; the calls block (run them in a thread)."""

    table = AuditRecord

    @property
    def done_at(self) -> Any:
        return AuditRecord.written_at

    def claim(self, limit: int = 100, now: datetime | None = None) -> list[AuditClaim]:
        """Take up to ``limit`` due records for this writer, oldest due first."""
        return super().claim(limit, now)

    def written(self, ids: Sequence[str], now: datetime | None = None) -> None:
        """HAPI has these records."""
        if ids:
            self._done((AuditRecord.id.in_(ids),), AuditRecord.attempts + 1, now)

    def failed(self, ids: Sequence[str], error: str, now: datetime | None = None) -> None:
        """HAPI did not take these records; each tries again after its own back-off."""
        if not ids:
            return
        with Session(self.engine) as session:
            rows = session.execute(
                select(AuditRecord.id, AuditRecord.attempts).where(
                    AuditRecord.id.in_(ids), AuditRecord.written_at.is_(None)
                )
            ).all()
        failures = [((AuditRecord.id == rid,), attempts + 1) for rid, attempts in rows]
        self._due_again(failures, error, now)

    def _due(self, moment: datetime, limit: int) -> Executable:
        return (
            select(AuditRecord)
            .where(AuditRecord.written_at.is_(None), AuditRecord.next_attempt_at <= moment)
            .order_by(AuditRecord.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )

    def _key(self, row: Any) -> Sequence[ColumnElement[bool]]:
        return (AuditRecord.id == row.id,)

    def _claim_of(self, result: Any) -> AuditClaim:
        row = result[0]
        return AuditClaim(row.id, row.resource, row.attempts)

    def recover(self, now: datetime | None = None) -> int:
        """Make due the open records of instances taken for dead: they go to HAPI as they were
        opened, saying the outcome is unknown. Returns how many."""
        moment = now or datetime.now(UTC)
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(AuditRecord)
                .where(
                    AuditRecord.owner.is_not(None),
                    AuditRecord.owner.not_in(alive(moment)),
                    AuditRecord.created_at <= moment - DEAD_AFTER,
                )
                .values(owner=None, next_attempt_at=moment)
                .execution_options(synchronize_session=False)
            )
        recovered = int(getattr(result, "rowcount", 0) or 0)
        if recovered:
            _log.warning(
                "audit records of requests that died mid-way go out with an unknown outcome",
                extra={"count": recovered},
            )
        return recovered


class AuditWriter:
    """Writes due AuditEvents into HAPI, a Bundle of ``batch`` at a time, and up to ``lanes``
    Bundles at once while more are due.

    Under load HAPI shares its time among the requests it runs, and the writer's Bundle is one
    of them: written one at a time, the records of 20 busy clients piled up faster than HAPI
    stored them (948 left after a minute, bench.load with HAPI on one core). Side by side, the
    writer gets HAPI's time in step with the backlog.
    """

    def __init__(
        self, outbox: AuditOutbox, hapi: HapiClient, *, batch: int = 100, lanes: int = 4
    ) -> None:
        self.outbox = outbox
        self.hapi = hapi
        self.batch = batch
        self.lanes = lanes
        # The loop's clock when dead instances' open records are next looked for.
        self._next_recovery = 0.0

    async def run_once(self) -> int:
        """Write what is due now; returns how many records were tried."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_recovery:
            self._next_recovery = loop.time() + DEAD_AFTER.total_seconds()
            await asyncio.to_thread(self.outbox.recover)
        claims = await asyncio.to_thread(self.outbox.claim, self.batch * self.lanes)
        bundles = [claims[i : i + self.batch] for i in range(0, len(claims), self.batch)]
        await asyncio.gather(*(self._write(bundle) for bundle in bundles))
        return len(claims)

    async def run_forever(
        self,
        wake: asyncio.Event,
        idle_seconds: float = 1.0,
        gather_seconds: float = 0.25,
        *,
        quiet: Callable[[], float] | None = None,
        quiet_seconds: float = 0.1,
        most_delay_seconds: float = 2.0,
    ) -> None:
        """Keep writing; sleep ``idle_seconds`` (or until ``wake``) when nothing is due.

        A wake-up waits ``gather_seconds`` more before writing: requests come in bursts, and
        their records, already safe in the service DB, then reach HAPI as one batch instead of
        one write each. With ``quiet`` (seconds since the service last answered a request, 0
        while one runs), it then waits for ``quiet_seconds`` of quiet, but never more than
        ``most_delay_seconds`` after the wake-up: HAPI serves the requests too, and a batch
        written during a burst slows every request of it.
        """
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before the round, not after: a wake-up while it runs (records kept meanwhile)
            # is not lost, to be found only by the idle timer, which skips the wait for a lull.
            wake.clear()
            try:
                tried = await self.run_once()
            except Exception:
                _log.exception("audit write round failed; trying again")
                tried = 0
            if tried >= self.batch:
                continue
            if not await woken(wake, idle_seconds):
                continue
            woken_at = loop.time()
            await asyncio.sleep(gather_seconds)
            while quiet is not None and quiet() < quiet_seconds:
                left = most_delay_seconds - (loop.time() - woken_at)
                if left <= 0:
                    break
                await asyncio.sleep(min(quiet_seconds, left))

    async def _write(self, claims: list[AuditClaim], kind: str = "transaction") -> None:
        """Send ``claims`` as one Bundle of ``kind``. A transaction is one commit in HAPI:
        measured on one core, 3.4 ms of HAPI's CPU an event against 5.9 in a batch, whose every
        entry HAPI commits on its own."""
        ids = [c.id for c in claims]
        try:
            # Every entry is a PUT by id, so the Bundle is safe to repeat: HAPI's client may retry.
            answer = await self.hapi.transaction(_bundle(claims, kind), idempotent=True)
        except HapiRequestError as exc:
            if exc.status < 500 and kind == "transaction":
                # HAPI stored none of them for one it refuses: as a batch, only that one is.
                await self._write(claims, "batch")
            elif exc.status < 500 and len(claims) > 1:
                # HAPI refuses a whole batch when one event in it cannot be parsed; sent alone,
                # only that one is refused and the others do not wait on it for ever.
                for claim in claims:
                    await self._write([claim], "batch")
            else:
                await self._failed(ids, exc)
            return
        except HapiUnavailableError as exc:
            await self._failed(ids, exc)
            return
        await self._answered(claims, answer)

    async def _answered(self, claims: list[AuditClaim], answer: dict[str, Any]) -> None:
        """Mark the events HAPI's ``answer`` says it stored written, and the others failed."""
        ids = [c.id for c in claims]
        entries = answer.get("entry") or []
        if len(entries) != len(claims):
            # HAPI answers entry for entry, in order; anything else cannot be matched up.
            error = f"HAPI answered {len(entries)} entries to a bundle of {len(claims)}"
            await asyncio.to_thread(self.outbox.failed, ids, error)
            return
        written: list[str] = []
        refused: dict[str, list[str]] = defaultdict(list)
        for claim, entry in zip(claims, entries, strict=True):
            response = entry.get("response") or {}
            if str(response.get("status", "")).startswith("2"):
                written.append(claim.id)
            else:
                refused[_entry_error(response)].append(claim.id)
        await asyncio.to_thread(self.outbox.written, written)
        for error, refused_ids in refused.items():
            _log.warning(
                "HAPI refused audit events; will retry",
                extra={"count": len(refused_ids), "reason": error},
            )
            await asyncio.to_thread(self.outbox.failed, refused_ids, error)

    async def _failed(self, ids: list[str], exc: HapiError) -> None:
        _log.warning(
            "HAPI took no audit events; will retry", extra={"count": len(ids), "reason": str(exc)}
        )
        await asyncio.to_thread(self.outbox.failed, ids, f"{type(exc).__name__}: {exc}")


def _bundle(claims: list[AuditClaim], kind: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "resource": wire.loads(claim.resource),
                "request": {"method": "PUT", "url": f"AuditEvent/{claim.id}"},
            }
            for claim in claims
        ],
    }


def _entry_error(response: dict[str, Any]) -> str:
    outcome = response.get("outcome") or {}
    diagnostics = "; ".join(
        str(issue.get("diagnostics") or issue.get("code") or "")
        for issue in outcome.get("issue") or []
        if isinstance(issue, dict)
    )
    status = response.get("status") or "no status"
    return f"{status}: {diagnostics}" if diagnostics else str(status)
