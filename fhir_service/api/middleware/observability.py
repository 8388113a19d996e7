"""ASGI middleware every request passes through: request id, access log, metrics, activity."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_service.api.activity import Activity
from fhir_service.api.problems import problem_response
from fhir_service.logs import REQUEST_ID_HEADER, request_id_var
from fhir_service.metrics import Metrics

__all__ = ["RequestContextMiddleware"]

_log = logging.getLogger("fhir_service.access")
# Ids from callers are echoed into logs and headers, so only a tame alphabet is taken as given.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_UNMATCHED_ROUTE = "<unmatched>"


class RequestContextMiddleware:
    """Gives each request an id, logs it as one JSON line and counts it by route template.

    The caller's ``X-Request-ID`` is kept when it is well-formed, otherwise a new one is made; the
    id is returned in the response, attached to every log record and forwarded to HAPI.

    An exception no handler took becomes a problem+json 500 here, inside the request's context,
    so that even a bug's response carries the request id. Each request counts in ``activity``
    while it runs.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, activity: Activity) -> None:
        self.app = app
        self.metrics = metrics
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_of(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        self.activity.started()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # A bug, not bad input. The caller gets the request id to quote, never the exception.
            _log.exception("unhandled error")
            if response_started:
                raise
            await _internal_error(request_id)(scope, receive, send_with_id)
        finally:
            self.activity.finished()
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_latency.labels(method, route, str(status)).observe(elapsed)
            # The route template, not the path: paths can carry national identity numbers.
            _log.info(
                "request handled",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


def _internal_error(request_id: str) -> Response:
    return problem_response(
        500,
        "Internal Server Error",
        "The service failed to handle this request. Quote the request id when reporting it.",
        request_id=request_id,
    )


def _request_id_of(scope: Scope) -> str:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == REQUEST_ID_HEADER.lower().encode():
            candidate = value.decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    # The template, not the path: /contracts/{id} is one series, however many ids are asked for.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else _UNMATCHED_ROUTE
