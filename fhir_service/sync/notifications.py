"""Change notifications as one running part: subscriptions, the change feed, the delivery worker.

The API's lifespan makes one :class:`Notifications` and runs it in the background. It waits for
the service DB's schema, then keeps HAPI's Subscriptions in place, reads changes when woken (by
the hook) or on a timer, and sends due deliveries, starting on each one the feed enqueues as soon
as it is committed.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from fhir_service.fhir import HapiClient, HapiError
from fhir_service.metrics import Metrics
from fhir_service.store import ContractStore
from fhir_service.sync.changes import ChangeFeed
from fhir_service.sync.startup import keep_trying
from fhir_service.sync.subscriptions import ensure_subscriptions, hook_token
from fhir_service.sync.webhook_deliveries import DeliveryWorker, Outbox
from fhir_service.sync.webhook_registrations import TargetPolicy, WebhookRegistry
from fhir_service.waits import woken

__all__ = ["Notifications"]

_log = logging.getLogger(__name__)


class Notifications:
    """Webhook registrations, the outbox and the change feed of one service instance."""

    def __init__(
        self,
        hapi: HapiClient,
        engine: Engine,
        store: ContractStore,
        http: httpx.AsyncClient,
        *,
        policy: TargetPolicy,
        hook_url: str,
        feed_interval_seconds: float,
        time_types_changed: asyncio.Event,
        metrics: Metrics | None = None,
    ) -> None:
        self.hapi = hapi
        self.engine = engine
        self.registry = WebhookRegistry(engine, policy)
        self.outbox = Outbox(engine)
        self.delivery_wake = asyncio.Event()
        """Set when deliveries are enqueued: the worker sends them at once."""
        self.feed = ChangeFeed(
            hapi, engine, store, self.registry, enqueued=self.delivery_wake, metrics=metrics
        )
        self.worker = DeliveryWorker(self.outbox, http)
        self.hook_url = hook_url
        self.feed_interval_seconds = feed_interval_seconds
        self.feed_wake = asyncio.Event()
        self.time_types_changed = time_types_changed
        """Set when HAPI says a time type changed: the catalogue reads them again."""
        self.subscribed = asyncio.Event()
        self.hook_token: str | None = None

    async def run(self, schema_ready: asyncio.Event) -> None:
        """Run until cancelled; starts once the service DB has its tables."""
        await schema_ready.wait()
        await keep_trying(
            "making the hook token",
            self._load_token,
            asyncio.Event(),
            retry_on=(SQLAlchemyError,),
        )
        parts = [
            keep_trying(
                "subscribing to HAPI's changes",
                self._subscribe,
                self.subscribed,
                retry_on=(HapiError,),
            ),
            self._feed_loop(),
            self.worker.run_forever(self.delivery_wake),
        ]
        await asyncio.gather(*parts)

    async def _load_token(self) -> None:
        self.hook_token = await asyncio.to_thread(hook_token, self.engine)

    async def _subscribe(self) -> None:
        if self.hook_token is None:
            raise RuntimeError("the hook token is made before subscribing")
        await ensure_subscriptions(self.hapi, self.hook_url, self.hook_token)

    async def _feed_loop(self) -> None:
        while True:
            self.feed_wake.clear()
            try:
                await self.feed.catch_up()
            except (HapiError, SQLAlchemyError) as exc:
                _log.warning("reading HAPI's changes failed; retrying", extra={"reason": str(exc)})
            # After a burst the feed reads again soon: once to see it ended, once to sweep.
            wait = self.feed_interval_seconds
            if self.feed.settling:
                wait = min(wait, _SETTLE_SECONDS)
            if await woken(self.feed_wake, wait):
                # HAPI calls once per changed resource, several per contract written: one
                # _history read after the burst does for all of them.
                await asyncio.sleep(_GATHER_SECONDS)


_GATHER_SECONDS = 0.5
_SETTLE_SECONDS = 1.0
