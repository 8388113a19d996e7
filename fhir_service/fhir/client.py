"""The client the service uses to talk to HAPI FHIR.

One instance per app, made in the lifespan and injected: it owns a pooled ``httpx.AsyncClient``.
"""

from __future__ import annotations

from typing import Any

import httpx

from fhir_service.fhir.transport import InstrumentedTransport
from fhir_service.metrics import Metrics

__all__ = ["HapiClient", "HapiRequestError", "HapiUnavailableError"]

FHIR_JSON = "application/fhir+json"


class HapiUnavailableError(Exception):
    """HAPI did not answer, or answered with something other than a FHIR server's reply.

    ``reason`` says what happened in words an operator can act on.
    """

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(f"HAPI FHIR at {base_url} is unavailable: {reason}")
        self.base_url = base_url
        self.reason = reason


class HapiRequestError(Exception):
    """HAPI answered a request with an error status; carries the status and HAPI's diagnostics."""

    def __init__(self, status: int, diagnostics: str) -> None:
        super().__init__(f"HAPI FHIR answered {status}: {diagnostics}")
        self.status = status
        self.diagnostics = diagnostics


class HapiClient:
    """Async client of one HAPI FHIR base URL."""

    def __init__(
        self,
        base_url: str,
        metrics: Metrics,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=InstrumentedTransport(inner, metrics),
            timeout=timeout,
            headers={"Accept": FHIR_JSON},
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def capability_statement(
        self, *, elements: tuple[str, ...] = (), timeout: float | None = None
    ) -> dict[str, Any]:
        """``GET /metadata``: HAPI's CapabilityStatement, or only ``elements`` of it.

        The whole statement is large (HAPI takes ~200 ms to serialize it); a probe should ask
        for an element or two. Raises :class:`HapiUnavailableError` when HAPI cannot be reached
        in time or answers with anything but a CapabilityStatement.
        """
        request_timeout = timeout if timeout is not None else self._http.timeout
        params = {"_elements": ",".join(elements)} if elements else None
        try:
            response = await self._http.get("/metadata", params=params, timeout=request_timeout)
        except httpx.TimeoutException as exc:
            raise HapiUnavailableError(self.base_url, "no answer within the time-out") from exc
        except httpx.TransportError as exc:
            raise HapiUnavailableError(
                self.base_url, f"cannot connect ({type(exc).__name__})"
            ) from exc
        if response.status_code != httpx.codes.OK:
            raise HapiUnavailableError(self.base_url, f"/metadata answered {response.status_code}")
        try:
            body: Any = response.json()
        except ValueError as exc:
            raise HapiUnavailableError(self.base_url, "/metadata did not answer JSON") from exc
        if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
            raise HapiUnavailableError(self.base_url, "/metadata answered no CapabilityStatement")
        return body

    async def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; its transaction-response, or :class:`HapiRequestError`."""
        try:
            response = await self._http.post("", json=bundle, headers={"Content-Type": FHIR_JSON})
        except httpx.TransportError as exc:
            raise HapiUnavailableError(
                self.base_url, f"cannot connect ({type(exc).__name__})"
            ) from exc
        if response.status_code != httpx.codes.OK:
            raise HapiRequestError(response.status_code, _diagnostics(response))
        body: dict[str, Any] = response.json()
        return body

    async def check_fhir_r4(self, *, timeout: float | None = None) -> None:
        """Probe HAPI cheaply; raise :class:`HapiUnavailableError` unless it serves FHIR R4."""
        statement = await self.capability_statement(elements=("fhirVersion",), timeout=timeout)
        version = statement.get("fhirVersion")
        if not isinstance(version, str) or not version.startswith("4.0."):
            raise HapiUnavailableError(self.base_url, f"serves FHIR {version}, not R4 (4.0.x)")


def _diagnostics(response: httpx.Response) -> str:
    try:
        outcome = response.json()
        return "; ".join(str(i.get("diagnostics", i.get("code"))) for i in outcome["issue"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return response.text[:500]
