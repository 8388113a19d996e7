"""The addresses HAPI's rest-hook Subscriptions call: they only wake the change feed, or the
time-type catalogue.

HAPI sends no payload (see ``sync/subscriptions.py``), so nothing here is trusted as data; the
feed reads what changed from HAPI itself. The bearer token keeps strangers from making it read.

Answered ahead of the request layers and the router, not as routes: HAPI calls once for every
change it stores, five or six times for each contract written (its CarePlan, its CareTeam, each
agreed time), and through the layers a call took 0.35 ms of the event loop's CPU, nearly 2 ms
for every contract written, spent while the next request waited; answered here, 0.12 ms. None
of the layers has anything to do for a hook: no caller's data comes in (the body is not read),
nothing is read or written for anyone, and so there is no access to record.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_service.api.middleware.security import running_service
from fhir_service.api.problems import problem_response
from fhir_service.metrics import Metrics
from fhir_service.sync import Notifications

__all__ = ["FEED_HOOK", "TIME_TYPES_HOOK", "HapiHooks"]

_log = logging.getLogger(__name__)

FEED_HOOK = "/hooks/hapi"
"""HAPI saw a change to a watched resource: the change feed reads the history now."""
TIME_TYPES_HOOK = "/hooks/hapi/time-types"
"""HAPI saw a change to a care unit's time type: the catalogue reads the time types again."""


class HapiHooks:
    """ASGI middleware, outermost: answers HAPI's calls to the hooks, passes on all else."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if path not in (FEED_HOOK, TIME_TYPES_HOOK) or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response = _wake(_notifications(scope), path, _authorization(scope))
        await response(scope, receive, send)
        # Counted with every other request, as they were when they were routes.
        status = str(response.status_code)
        self.metrics.http_requests.labels("POST", path, status).inc()
        self.metrics.http_latency.labels("POST", path, status).observe(
            time.perf_counter() - started
        )


def _wake(notifications: Notifications, path: str, authorization: str) -> Response:
    """Set the event ``path`` stands for when the call is HAPI's (it bears the hook token)."""
    token = notifications.hook_token
    scheme, _, presented = authorization.partition(" ")
    if (
        token is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(presented.encode(), token.encode())
    ):
        _log.warning("hook called without HAPI's token; refused", extra={"route": path})
        return _unauthorized()
    event: asyncio.Event = (
        notifications.feed_wake if path == FEED_HOOK else notifications.time_types_changed
    )
    event.set()
    return Response(status_code=204)


def _authorization(scope: Scope) -> str:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return ""


def _notifications(scope: Scope) -> Notifications:
    fastapi: FastAPI = scope["app"]
    return running_service(fastapi).notifications


def _unauthorized() -> Response:
    return problem_response(
        401,
        "Unauthorized",
        "this endpoint is for the HAPI FHIR server's subscriptions",
        headers={"WWW-Authenticate": "Bearer"},
    )
