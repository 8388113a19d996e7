"""The client the service uses to talk to HAPI FHIR.

One instance per app, made in the lifespan and injected: it owns a pooled transport (aiohttp's:
:class:`~fhir_service.fhir.transport.AiohttpTransport`) and hands it httpx's requests itself.
Every call has a time-out. Calls that are safe to repeat (reads, and writes the caller marks
idempotent, such as a transaction of conditional writes) are retried a bounded number of times
with jittered back-off when HAPI cannot be reached or answers 429/502/503/504; other calls are
retried only when the connection failed before anything was sent.

A write that times out is not repeated, even when safe: HAPI may still be working on it, and a
second copy only doubles its load (a large transaction sent three times kept HAPI busy for
minutes, then committed). Its outcome is unknown (:class:`HapiOutcomeUnknownError`), and the
caller says so; a write whose connection broke after sending is repeated when safe, and unknown
when it is not or every try broke.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from fhir_service import wire
from fhir_service.fhir.errors import (
    ConflictError,
    HapiOutcomeUnknownError,
    HapiRequestError,
    HapiUnavailableError,
    error_for,
)
from fhir_service.fhir.transport import AiohttpTransport, InstrumentedTransport
from fhir_service.metrics import Metrics
from fhir_service.write_gate import before_write

__all__ = ["FHIR_JSON", "HapiClient", "RetryPolicy", "SearchResult"]

FHIR_JSON = "application/fhir+json"
_HEADERS = {
    "Accept": FHIR_JSON,
    # HAPI's gzipped answers cost less in all than plain ones: fewer bytes through the loop.
    "Accept-Encoding": "gzip",
    "User-Agent": "patient-contracts-fhir-service",
}
Resource = dict[str, Any]
Params = Mapping[str, str] | Sequence[tuple[str, str]]
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_MAX_CONNECTIONS = 100
"""The connections to HAPI at most, all of them kept open when idle: a pool that closed idle
connections beyond a smaller number (httpcore's default did, at 20) made thirty requests at once
open a new connection for every second request and take 2.5 times as long."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a safe call is repeated."""

    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 2.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based): full jitter, or Retry-After."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - spreading retries, not security


@dataclass
class SearchResult:
    """The entries of every page read, in order; ``truncated`` when the page cap stopped it.

    ``meta`` is the first page's ``Bundle.meta``: its ``lastUpdated`` is the server's clock.
    """

    entries: list[Resource] = field(default_factory=list)
    meta: Resource = field(default_factory=dict)
    total: int | None = None
    pages: int = 0
    truncated: bool = False

    @property
    def resources(self) -> list[Resource]:
        """The resources of all entries, matches and includes alike."""
        return [e["resource"] for e in self.entries if "resource" in e]

    def matches(self) -> list[Resource]:
        """Only the resources that matched the search (not ``_include``d ones)."""
        return [
            e["resource"]
            for e in self.entries
            if e.get("search", {}).get("mode", "match") == "match" and "resource" in e
        ]

    def as_bundle(self) -> Resource:
        """All pages as one searchset Bundle."""
        return {"resourceType": "Bundle", "type": "searchset", "entry": self.entries}


class HapiClient:
    """Async client of one HAPI FHIR base URL."""

    def __init__(
        self,
        base_url: str,
        metrics: Metrics,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else RetryPolicy()
        inner = transport if transport is not None else AiohttpTransport(_MAX_CONNECTIONS)
        self._transport = InstrumentedTransport(inner, metrics)
        self._timeout = httpx.Timeout(timeout).as_dict()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()

    # Reads: safe to repeat.

    async def read(self, resource_type: str, resource_id: str) -> Resource:
        """The current version of ``resource_type/resource_id``."""
        return _json(await self._send("GET", f"/{resource_type}/{resource_id}", safe=True))

    async def vread(self, resource_type: str, resource_id: str, version: str | int) -> Resource:
        """One version of a resource."""
        path = f"/{resource_type}/{resource_id}/_history/{version}"
        return _json(await self._send("GET", path, safe=True))

    async def history(
        self,
        resource_type: str | None = None,
        resource_id: str | None = None,
        *,
        params: Params = (),
        max_pages: int = 10,
    ) -> SearchResult:
        """``_history`` of the server, a type, or one resource; newest first, paged."""
        path = "/".join(p for p in ("", resource_type, resource_id, "_history") if p is not None)
        return await self._paged(path or "/_history", params, max_pages)

    async def search(
        self, resource_type: str, params: Params = (), *, max_pages: int = 10
    ) -> SearchResult:
        """Search ``resource_type`` and follow ``next`` links, up to ``max_pages`` pages."""
        return await self._paged(f"/{resource_type}", params, max_pages)

    async def page(self, path: str, params: Params = ()) -> Resource:
        """One Bundle page at ``path`` below the base (a search, a history, or a paging link's
        ``_getpages``), as HAPI wrote it: links and fullUrls still name HAPI's address.
        """
        return _json(await self._send("GET", path, safe=True, params=params))

    async def validate(self, resource: Resource) -> Resource:
        """``$validate`` of ``resource`` against base R4 and the profiles it declares; the
        OperationOutcome, whose error issues say what is wrong. Nothing is written.
        """
        path = f"/{resource.get('resourceType')}/$validate"
        try:
            # A POST that writes nothing: a lost answer leaves nothing unsure.
            return _json(await self._send("POST", path, safe=True, writes=False, json=resource))
        except HapiRequestError as exc:
            # HAPI may answer an invalid resource with 412 and the same OperationOutcome, and
            # one it cannot parse (an unknown resourceType) with 400 and why.
            if exc.status in (400, 412) and exc.outcome is not None:
                return exc.outcome
            raise

    async def capability_statement(
        self, *, elements: tuple[str, ...] = (), timeout: float | None = None
    ) -> Resource:
        """``GET /metadata``: HAPI's CapabilityStatement, or only ``elements`` of it.

        The whole statement is large (HAPI takes ~200 ms to serialize it); a probe should ask
        for an element or two. Raises :class:`HapiUnavailableError` when HAPI cannot be reached
        in time or answers with anything but a CapabilityStatement.
        """
        params = {"_elements": ",".join(elements)} if elements else {}
        try:
            response = await self._send(
                "GET", "/metadata", safe=True, params=params, timeout=timeout, attempts=1
            )
            body: Any = wire.loads(response.content)
        except HapiRequestError as exc:
            raise HapiUnavailableError(self.base_url, f"/metadata answered {exc.status}") from exc
        except ValueError as exc:
            raise HapiUnavailableError(self.base_url, "/metadata did not answer JSON") from exc
        if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
            raise HapiUnavailableError(self.base_url, "/metadata answered no CapabilityStatement")
        return body

    async def check_fhir_r4(self, *, timeout: float | None = None) -> None:
        """Probe HAPI cheaply; raise :class:`HapiUnavailableError` unless it serves FHIR R4."""
        statement = await self.capability_statement(elements=("fhirVersion",), timeout=timeout)
        version = statement.get("fhirVersion")
        if not isinstance(version, str) or not version.startswith("4.0."):
            raise HapiUnavailableError(self.base_url, f"serves FHIR {version}, not R4 (4.0.x)")

    # Writes.

    async def create(self, resource: Resource, *, if_none_exist: str | None = None) -> Resource:
        """Create ``resource``; with ``if_none_exist`` (a search query), only if none matches.

        A conditional create is safe to repeat; a plain one is not.
        """
        headers = {"If-None-Exist": if_none_exist} if if_none_exist else {}
        response = await self._send(
            "POST",
            f"/{resource['resourceType']}",
            safe=if_none_exist is not None,
            json=resource,
            headers=headers,
        )
        return _json(response)

    async def update(self, resource: Resource, *, if_match: str | int | None = None) -> Resource:
        """Update by id; with ``if_match`` (a version), only if that is still the current one.

        A stale version raises :class:`ConflictError` (HAPI answers 409).
        """
        headers = {"If-Match": f'W/"{if_match}"'} if if_match is not None else {}
        path = f"/{resource['resourceType']}/{resource['id']}"
        return _json(await self._send("PUT", path, safe=True, json=resource, headers=headers))

    async def conditional_update(self, criteria: str, resource: Resource) -> Resource:
        """Update the one resource matching ``criteria`` (``identifier=s|v``), or create it."""
        path = f"/{resource['resourceType']}?{criteria}"
        return _json(await self._send("PUT", path, safe=True, json=resource))

    async def delete(self, resource_type: str, resource_id: str) -> None:
        """Delete a resource (HAPI keeps its history)."""
        await self._send("DELETE", f"/{resource_type}/{resource_id}", safe=True)

    async def transaction(self, bundle: Resource, *, idempotent: bool = False) -> Resource:
        """POST a transaction (or batch) Bundle; its transaction-response.

        Security labels and tags of the entries replace those stored, so one taken off is gone.

        Mark it ``idempotent`` when every entry is a conditional or versioned write, so that a
        repeat cannot write twice; only then is it retried after a lost answer.
        """
        # Each entry's security labels and tags are what it says, not added to the stored ones
        # (HAPI's default): a label taken off must be gone, or content stays withheld that
        # should not, and a draft put to the patient must lose its tag of one that was not.
        headers = {"X-Meta-Snapshot-Mode": "TAG,SECURITY_LABEL"}
        return _json(await self._send("POST", "", safe=idempotent, json=bundle, headers=headers))

    # The one place requests are sent, retried and turned into errors.

    async def _send(
        self,
        method: str,
        url: str,
        *,
        safe: bool,
        writes: bool | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
        params: Params | None = None,
        json: Resource | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        # Only what may change HAPI has an outcome to be unsure of after a lost answer.
        writes = method != "GET" if writes is None else writes
        if writes:
            # A request's write waits for its audit record (fhir_service.write_gate).
            await before_write()
        unavailable = HapiOutcomeUnknownError if writes else HapiUnavailableError
        headers = {**_HEADERS, **(headers or {})}
        content = None
        if json is not None:
            content = wire.dumps(json)
            headers["Content-Type"] = FHIR_JSON
        timeouts = self._timeout if timeout is None else httpx.Timeout(timeout).as_dict()
        query = None
        if params:
            query = tuple(params.items()) if isinstance(params, Mapping) else tuple(params)
        # Straight to the transport: httpx's client around it (cookies, redirects, auth, URL
        # merging) cost more CPU than aiohttp's whole request, and none of it is used here.
        request = httpx.Request(
            method,
            f"{self.base_url}/{url.lstrip('/')}",
            params=query,
            content=content,
            headers=headers,
            extensions={"timeout": timeouts},
        )
        tries = attempts if attempts is not None else self.retry.attempts
        # Whether an earlier try of this write may have reached HAPI: its answer was lost. A
        # later try that fails then cannot say that nothing was written.
        uncertain = False
        for attempt in range(1, tries + 1):
            retry_after = None
            try:
                response = await self._transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing reached HAPI: repeating cannot write twice.
                failure: Exception = HapiUnavailableError(
                    self.base_url, f"cannot connect ({type(exc).__name__})"
                )
                repeatable = True
                cause: Exception = exc
            except httpx.TimeoutException as exc:
                failure = unavailable(self.base_url, "no answer within the time-out")
                repeatable, cause = safe and not writes, exc
                uncertain = uncertain or writes
            except httpx.TransportError as exc:
                failure = unavailable(
                    self.base_url, f"the connection failed ({type(exc).__name__})"
                )
                repeatable, cause = safe, exc
                uncertain = uncertain or writes
            else:
                if response.status_code < httpx.codes.BAD_REQUEST:
                    return response
                failure = error_for(response)
                repeatable = safe and response.status_code in _RETRY_STATUSES
                retry_after = _retry_after(response)
                cause = failure
            if not repeatable or attempt == tries:
                # A conflict is HAPI's word on what it holds, which the writer reads next.
                said = isinstance(failure, HapiOutcomeUnknownError | ConflictError)
                if uncertain and not said:
                    failure = HapiOutcomeUnknownError(
                        self.base_url, f"an earlier try may have written; then: {failure}"
                    )
                if failure is cause:
                    raise failure
                raise failure from cause
            await asyncio.sleep(self.retry.delay(attempt, retry_after))
        raise AssertionError("unreachable: the loop returns or raises")

    async def _paged(self, path: str, params: Params, max_pages: int) -> SearchResult:
        result = SearchResult()
        response = await self._send("GET", path, safe=True, params=params)
        while True:
            page = _json(response)
            result.pages += 1
            if result.pages == 1:
                result.meta = page.get("meta", {})
            result.entries += page.get("entry", [])
            if result.total is None and isinstance(page.get("total"), int):
                result.total = page["total"]
            next_link = next(
                (link["url"] for link in page.get("link", []) if link.get("relation") == "next"),
                None,
            )
            if next_link is None:
                return result
            if result.pages >= max_pages:
                result.truncated = True
                return result
            response = await self._send("GET", self._rebase(next_link), safe=True)

    def _rebase(self, link: str) -> str:
        # HAPI writes paging links with the address it was reached by; a proxy or a configured
        # server address can make that differ from ours, so the link is followed through our
        # base: its path below the base (history pages have one; search pages do not) and query.
        parts = urlsplit(link)
        base_path = urlsplit(self.base_url).path.rstrip("/")
        below = parts.path[len(base_path) :] if parts.path.startswith(base_path) else ""
        return f"{below.rstrip('/')}?{parts.query}"


def _json(response: httpx.Response) -> Resource:
    try:
        body = wire.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None
