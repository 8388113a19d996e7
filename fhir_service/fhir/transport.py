"""The transport under the HAPI client: forwards the request id and measures every call."""

from __future__ import annotations

import time

import httpx

from fhir_service.logs import REQUEST_ID_HEADER, current_request_id
from fhir_service.metrics import Metrics

__all__ = ["InstrumentedTransport"]


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """Wraps another transport: adds ``X-Request-ID`` and records count and latency per outcome.

    The outcome label is the HTTP status, or the name of the httpx error class when no response
    came back (``ConnectError``, ``ReadTimeout``, ...), so an outage shows in the metrics.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request_id = current_request_id()
        if request_id is not None and REQUEST_ID_HEADER not in request.headers:
            request.headers[REQUEST_ID_HEADER] = request_id
        started = time.perf_counter()
        outcome = "error"
        try:
            response = await self._inner.handle_async_request(request)
            outcome = str(response.status_code)
            return response
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            elapsed = time.perf_counter() - started
            self._metrics.hapi_requests.labels(request.method, outcome).inc()
            self._metrics.hapi_latency.labels(request.method, outcome).observe(elapsed)

    async def aclose(self) -> None:
        await self._inner.aclose()
