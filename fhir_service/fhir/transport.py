"""The transports under the HAPI client.

``AiohttpTransport`` carries the requests: aiohttp's connection pool and C HTTP parser under the
httpx requests and answers the client is written against. ``InstrumentedTransport`` wraps it: it
forwards the request id and measures every call.
"""

from __future__ import annotations

import time

import aiohttp
import httpx
import yarl

from fhir_service.logs import REQUEST_ID_HEADER, current_request_id
from fhir_service.metrics import Metrics

__all__ = ["AiohttpTransport", "InstrumentedTransport"]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx's requests through one pooled ``aiohttp.ClientSession``; says its failures
    as httpx's errors, so the client above retries and reports them as it always has.

    Why not httpcore: the HAPI call is on the path of nearly every request, and a contract
    read's (a 17 KB Bundle, gzipped) took 1.2-1.5 ms of CPU through httpx over httpcore, h11 and
    anyio, 0.8-1.1 ms over this, its JSON parsed in both. Bodies are read whole (the client
    reads every answer whole anyway), and left encoded: httpx decodes what it asked for.
    httpx's time-outs hold: ``connect`` for opening a connection, ``pool`` for getting one,
    ``read`` for each read of the answer.

    Like every HTTP/1.1 client, aiohttp sends an idempotent request (GET, PUT, DELETE) once more
    when a kept-alive connection turns out closed as it was sent; the client above repeats
    those anyway (``safe``). A POST is never sent twice here.
    """

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _pool(self) -> aiohttp.ClientSession:
        # Made on first use, in the event loop that uses it (a session belongs to one loop).
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        try:
            async with self._pool().request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeouts.get("pool"),
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
            ) as answer:
                content = await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(
            answer.status,
            headers=list(answer.raw_headers),
            stream=httpx.ByteStream(content),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (answer.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that says what aiohttp's ``exc`` says: whether anything reached HAPI."""
    message = str(exc) or type(exc).__name__
    error: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout  # no connection: nothing was sent
    elif isinstance(exc, TimeoutError):
        error = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError  # no connection: nothing was sent
    elif isinstance(
        exc,
        aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError,
    ):
        error = httpx.RemoteProtocolError  # dropped, cut short, or an answer that is not HTTP
    elif isinstance(exc, aiohttp.ClientConnectionError):
        error = httpx.ReadError
    else:
        error = httpx.TransportError
    return error(message, request=request)


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
