"""The durable outbox: webhook deliveries kept in the service DB until the receiver takes them.

An event becomes one row per interested webhook in the same database transaction that records
the change as seen, so nothing is lost between learning of a change and sending it. Workers claim
due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite has one writer anyway)
and move them a lease ahead before sending, so two instances never send the same row at once and
a worker that dies mid-send leaves its rows due again once the lease runs out. Failed sends are
retried with jittered exponential back-off, without limit, across restarts; so are sends the
webhook target policy refuses (a host that now resolves to a private address, say), which never
open a connection (:mod:`fhir_service.sync.webhook_targets`).

A worker keeps sending as a pipeline: a few sends in flight to one webhook at most, many
webhooks side by side. Each send that ends makes room for another at the worker's next turn,
which records what became of every send ended since and claims again, in one transaction.
Claims take the webhooks in turns, so a receiver that is slow, down or far behind holds up only
its own deliveries.

Every delivery is signed the way Standard Webhooks sign: ``webhook-id`` (the event id, the same
on every retry, so receivers can de-duplicate), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. A secret in the
Standard Webhooks form (``whsec_`` + base64) is keyed with its decoded bytes, so their libraries
verify our deliveries as they are; any other secret with its UTF-8 bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import (
    ColumnElement,
    Executable,
    and_,
    case,
    func,
    insert,
    literal,
    select,
    tuple_,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from fhir_service import __version__
from fhir_service.servicedb.leases import LeasedOutbox
from fhir_service.servicedb.tables import Delivery, Webhook
from fhir_service.sync.webhook_targets import RefusedTargetError, canonical_host
from fhir_service.waits import woken

__all__ = ["Claim", "DeliveryWorker", "Outbox", "Outcome", "delivery_rows", "enqueue", "sign"]

_log = logging.getLogger(__name__)


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    message = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass
    return secret.encode("utf-8")


def enqueue(
    session: Session,
    event_id: str,
    payload: dict[str, Any],
    webhook_ids: Iterable[str],
    now: datetime,
) -> None:
    """Add one delivery per webhook to ``session``; the caller's transaction commits them."""
    rows = delivery_rows(event_id, payload, webhook_ids, now)
    if rows:
        session.execute(insert(Delivery), rows)


def delivery_rows(
    event_id: str, payload: dict[str, Any], webhook_ids: Iterable[str], now: datetime
) -> list[dict[str, Any]]:
    """The rows :func:`enqueue` adds, one per webhook, due at ``now``: for a caller that
    enqueues many events in one statement."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return [
        {
            "event_id": event_id,
            "webhook_id": webhook_id,
            "payload": body,
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
        }
        for webhook_id in webhook_ids
    ]


@dataclass(frozen=True)
class Claim:
    """A delivery this worker has claimed for one lease."""

    event_id: str
    webhook_id: str
    url: str
    secret: str
    payload: str
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """How one send of a claim went: ``error`` says why the receiver did not take it."""

    claim: Claim
    error: str | None = None


class Outbox(LeasedOutbox[Claim]):
    """Claim, complete and reschedule deliveries; the calls block (run them in a thread).

    A claim takes due deliveries in turns across webhooks: every webhook's oldest due delivery
    before any webhook's second, so one receiver's backlog never keeps another's deliveries
    waiting behind it.
    """

    table = Delivery
    # A receiver may be down for a while: retries up to 30 minutes apart, as the README says.
    longest_wait = timedelta(minutes=30)

    @property
    def done_at(self) -> Any:
        return Delivery.delivered_at

    def claim(self, limit: int = 20, now: datetime | None = None) -> list[Claim]:
        """Take up to ``limit`` due deliveries for this worker."""
        return super().claim(limit, now)

    def delivered(self, claim: Claim, now: datetime | None = None) -> None:
        """The receiver took it."""
        self.exchange([Outcome(claim)], 0, now)

    def failed(self, claim: Claim, error: str, now: datetime | None = None) -> None:
        """The receiver did not take it; try again after a back-off."""
        self.exchange([Outcome(claim, error)], 0, now)

    def exchange(
        self,
        outcomes: Sequence[Outcome],
        limit: int,
        now: datetime | None = None,
        *,
        per_webhook: int | None = None,
        sending: Mapping[str, int] | None = None,
    ) -> list[Claim]:
        """Record how sends went, then claim up to ``limit`` due deliveries: in one transaction,
        so a worker that keeps sending costs the database one transaction per turn, not one per
        delivery.

        With ``per_webhook``, a webhook gets at most that many claims less those it has in
        ``sending`` (webhook id: sends in flight). A claim that loses a race to another
        claimant (SQLite's "database is locked") claims nothing; when there were outcomes to
        record it raises, and they are to be recorded again.
        """
        moment = now or datetime.now(UTC)
        try:
            with Session(self.engine) as session, session.begin():
                self._record(session, outcomes, moment)
                if limit <= 0:
                    return []
                return self._take(session, self._due(moment, limit, per_webhook, sending), moment)
        except OperationalError as exc:
            if outcomes:
                raise
            _log.info(
                "outbox claim lost a race; trying later",
                extra={"outbox": Delivery.__tablename__, "reason": str(exc)},
            )
            return []

    def _record(self, session: Session, outcomes: Sequence[Outcome], moment: datetime) -> None:
        taken = [(o.claim.event_id, o.claim.webhook_id) for o in outcomes if o.error is None]
        if taken:
            keys = tuple_(Delivery.event_id, Delivery.webhook_id).in_(taken)
            self._done((keys,), Delivery.attempts + 1, moment, session)
        refused: dict[str, list[tuple[Sequence[ColumnElement[bool]], int]]] = defaultdict(list)
        for outcome in outcomes:
            if outcome.error is not None:
                refused[outcome.error].append(
                    (self._key_of(outcome.claim), outcome.claim.attempts + 1)
                )
        for error, failures in refused.items():
            self._due_again(failures, error, moment, session)

    def _due(
        self,
        moment: datetime,
        limit: int,
        per_webhook: int | None = None,
        sending: Mapping[str, int] | None = None,
    ) -> Executable:
        # Each due delivery's place in its webhook's queue; the claim takes places in turn.
        place = (
            func.row_number()
            .over(
                partition_by=Delivery.webhook_id,
                order_by=(Delivery.next_attempt_at, Delivery.event_id),
            )
            .label("place")
        )
        queues = (
            select(Delivery.event_id, Delivery.webhook_id, place)
            .where(Delivery.delivered_at.is_(None), Delivery.next_attempt_at <= moment)
            .subquery()
        )
        due = (
            select(Delivery, Webhook.url, Webhook.secret)
            .join(
                queues,
                and_(
                    queues.c.event_id == Delivery.event_id,
                    queues.c.webhook_id == Delivery.webhook_id,
                ),
            )
            .join(Webhook, Webhook.id == Delivery.webhook_id)
            # Again on the rows locked: PostgreSQL checks these once more on a row another
            # claimant leased meanwhile, and skips it; the ranking above does not.
            .where(Delivery.delivered_at.is_(None), Delivery.next_attempt_at <= moment)
            .order_by(queues.c.place, Delivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=Delivery)
        )
        if per_webhook is None:
            return due
        busy = [(queues.c.webhook_id == w, per_webhook - n) for w, n in (sending or {}).items()]
        room = case(*busy, else_=per_webhook) if busy else literal(per_webhook)
        return due.where(queues.c.place <= room)

    def _key(self, row: Any) -> Sequence[ColumnElement[bool]]:
        return (Delivery.event_id == row.event_id, Delivery.webhook_id == row.webhook_id)

    def _key_of(self, claim: Claim) -> Sequence[ColumnElement[bool]]:
        return (Delivery.event_id == claim.event_id, Delivery.webhook_id == claim.webhook_id)

    def _claim_of(self, result: Any) -> Claim:
        delivery, url, secret = result
        return Claim(
            delivery.event_id, delivery.webhook_id, url, secret, delivery.payload, delivery.attempts
        )


class DeliveryWorker:
    """Sends due deliveries over HTTP, as a pipeline: a send that ends makes room for the next.

    At most ``per_webhook`` sends are in flight to one webhook and ``batch`` in all (per worker:
    each instance has its own). A slow or dead receiver fills only its own places, never another
    receiver's. What became of the sends that ended is recorded with the next claim, in one
    transaction. ``http`` is meant to be
    :func:`~fhir_service.sync.webhook_targets.webhook_client`, whose connections go only where
    the webhook target policy allows; its pool must hold ``batch`` connections (httpx's default
    holds 100).
    """

    def __init__(
        self,
        outbox: Outbox,
        http: httpx.AsyncClient,
        *,
        per_webhook: int = 4,
        batch: int = 64,
        timeout: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.http = http
        self.per_webhook = per_webhook
        self.batch = batch
        self.timeout = timeout

    async def run_once(self) -> int:
        """Send what is due now, within the bounds, and record how each send went; returns how
        many sends were tried."""
        claims = await asyncio.to_thread(
            self.outbox.exchange, (), self.batch, per_webhook=self.per_webhook
        )
        outcomes = await asyncio.gather(*(self._send(claim) for claim in claims))
        if outcomes:
            await asyncio.to_thread(self.outbox.exchange, outcomes, 0)
        return len(claims)

    async def run_forever(self, wake: asyncio.Event, idle_seconds: float = 2.0) -> None:
        """Keep sending until cancelled.

        ``wake`` is set when deliveries are enqueued; every send that ends sets it too. Each
        turn records the sends that ended and claims what there is room for; then the worker
        waits for ``wake``, or ``idle_seconds`` when nothing happens (retries falling due,
        deliveries another instance enqueued).
        """
        sending: Counter[str] = Counter()
        ended: list[Outcome] = []
        sends: set[asyncio.Task[None]] = set()

        async def send(claim: Claim) -> None:
            try:
                ended.append(await self._send(claim))
            except Exception as exc:
                # A fault of ours, not the receiver's: said, and retried as any failed send.
                _log.exception(
                    "webhook delivery failed unexpectedly; will retry",
                    extra={"event_id": claim.event_id, "webhook_id": claim.webhook_id},
                )
                ended.append(Outcome(claim, type(exc).__name__))
            finally:
                sending[claim.webhook_id] -= 1
                wake.set()

        try:
            while True:
                wake.clear()
                room = self.batch - sum(sending.values())
                outcomes = ended[:]
                ended.clear()
                if outcomes or room > 0:
                    try:
                        claims = await asyncio.to_thread(
                            self.outbox.exchange,
                            outcomes,
                            room,
                            per_webhook=self.per_webhook,
                            sending=+sending,
                        )
                    except Exception:
                        _log.exception("webhook delivery round failed; trying again")
                        # Those sends happened: what became of them is recorded next turn.
                        ended[:0] = outcomes
                        await asyncio.sleep(idle_seconds)
                        continue
                    for claim in claims:
                        sending[claim.webhook_id] += 1
                        task = asyncio.create_task(send(claim))
                        sends.add(task)
                        task.add_done_callback(sends.discard)
                await woken(wake, idle_seconds)
        finally:
            # A stop ends the sends in flight (their rows go again once the lease runs out) and
            # waits for them to let go of their connections.
            for task in sends:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            if ended:
                # A stop records the answers already had, so a restart does not send them again;
                # should that fail, they go again once their lease runs out.
                try:
                    await asyncio.to_thread(self.outbox.exchange, ended, 0)
                except Exception:
                    _log.warning("webhook deliveries sent at the stop were not recorded")

    async def _send(self, claim: Claim) -> Outcome:
        body = claim.payload.encode("utf-8")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"patient-contracts-fhir-service/{__version__}",
            "webhook-id": claim.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(claim.secret, claim.event_id, timestamp, body),
        }
        level = logging.INFO
        try:
            # IPv4 written other than in dotted decimal is refused here, naming the policy:
            # httpx refuses some such URLs itself, with a reason that says less.
            canonical_host(urlsplit(claim.url).hostname or "")
            response = await self.http.post(
                claim.url, content=body, headers=headers, timeout=self.timeout
            )
        except RefusedTargetError as exc:
            # Registered before the policy changed, or the name resolves elsewhere now: worth a
            # warning, and a retry, since either can change back.
            level = logging.WARNING
            error = f"refused by the webhook target policy: {exc}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if response.is_success:
                return Outcome(claim)
            error = f"HTTP {response.status_code}"
        _log.log(
            level,
            "webhook delivery failed; will retry",
            extra={"event_id": claim.event_id, "webhook_id": claim.webhook_id, "reason": error},
        )
        return Outcome(claim, error)
