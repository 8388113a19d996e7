"""The durable outbox: webhook deliveries kept in the service DB until the receiver takes them.

An event becomes one row per interested webhook in the same database transaction that records
the change as seen, so nothing is lost between learning of a change and sending it. Workers claim
due rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite has one writer anyway)
and move them a lease ahead before sending, so two instances never send the same row at once and
a worker that dies mid-send leaves its rows due again once the lease runs out. Failed sends are
retried with jittered exponential back-off, without limit, across restarts; so are sends the
webhook target policy refuses (a host that now resolves to a private address, say), which never
open a connection (:mod:`fhir_service.sync.webhook_targets`).

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
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import ColumnElement, Executable, select
from sqlalchemy.orm import Session

from fhir_service import __version__
from fhir_service.servicedb.leases import LeasedOutbox
from fhir_service.servicedb.tables import Delivery, Webhook
from fhir_service.sync.webhook_targets import RefusedTargetError, canonical_host

__all__ = ["Claim", "DeliveryWorker", "Outbox", "enqueue", "sign"]

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
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    for webhook_id in webhook_ids:
        session.add(
            Delivery(
                event_id=event_id,
                webhook_id=webhook_id,
                payload=body,
                created_at=now,
                next_attempt_at=now,
                attempts=0,
            )
        )


@dataclass(frozen=True)
class Claim:
    """A delivery this worker has claimed for one lease."""

    event_id: str
    webhook_id: str
    url: str
    secret: str
    payload: str
    attempts: int


class Outbox(LeasedOutbox[Claim]):
    """Claim, complete and reschedule deliveries; the calls block (run them in a thread)."""

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
        self._done(self._key_of(claim), claim.attempts + 1, now)

    def failed(self, claim: Claim, error: str, now: datetime | None = None) -> None:
        """The receiver did not take it; try again after a back-off."""
        self._due_again([(self._key_of(claim), claim.attempts + 1)], error, now)

    def _due(self, moment: datetime, limit: int) -> Executable:
        return (
            select(Delivery, Webhook.url, Webhook.secret)
            .join(Webhook, Webhook.id == Delivery.webhook_id)
            .where(Delivery.delivered_at.is_(None), Delivery.next_attempt_at <= moment)
            .order_by(Delivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=Delivery)
        )

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
    """Sends due deliveries over HTTP, a batch at a time.

    ``http`` is meant to be :func:`~fhir_service.sync.webhook_targets.webhook_client`, whose
    connections go only where the webhook target policy allows.
    """

    def __init__(
        self,
        outbox: Outbox,
        http: httpx.AsyncClient,
        *,
        batch: int = 20,
        timeout: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.http = http
        self.batch = batch
        self.timeout = timeout

    async def run_once(self) -> int:
        """Send what is due now; returns how many sends were tried."""
        claims = await asyncio.to_thread(self.outbox.claim, self.batch)
        await asyncio.gather(*(self._send(claim) for claim in claims))
        return len(claims)

    async def run_forever(self, wake: asyncio.Event, idle_seconds: float = 2.0) -> None:
        """Keep sending; sleep ``idle_seconds`` (or until ``wake``) when nothing is due."""
        while True:
            try:
                tried = await self.run_once()
            except Exception:
                _log.exception("webhook delivery round failed; trying again")
                tried = 0
            if tried:
                continue
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), idle_seconds)

    async def _send(self, claim: Claim) -> None:
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
                await asyncio.to_thread(self.outbox.delivered, claim)
                return
            error = f"HTTP {response.status_code}"
        _log.log(
            level,
            "webhook delivery failed; will retry",
            extra={"event_id": claim.event_id, "webhook_id": claim.webhook_id, "reason": error},
        )
        await asyncio.to_thread(self.outbox.failed, claim, error)
