"""The HAPI client's error paths and instrumentation, against pytest-httpx's mocked transport;
its connection pool, against a local server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_service.fhir import HapiClient, HapiUnavailableError
from fhir_service.logs import request_id_var
from fhir_service.metrics import Metrics
from tests.keepalive_server import keepalive_server

BASE = "http://hapi.test/fhir"
METADATA = f"{BASE}/metadata"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(metrics: Metrics) -> AsyncIterator[HapiClient]:
    # pytest-httpx answers in place of httpx's own transport.
    hapi = HapiClient(BASE, metrics, timeout=1.0, transport=httpx.AsyncHTTPTransport())
    yield hapi
    await hapi.aclose()


def _count(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "fhir_service_hapi_requests_total", {"method": "GET", "outcome": outcome}
    )
    return value or 0.0


async def test_capability_statement_is_returned_and_counted(
    httpx_mock: HTTPXMock, client: HapiClient, metrics: Metrics
) -> None:
    httpx_mock.add_response(
        url=METADATA, json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}
    )

    statement = await client.capability_statement()

    assert statement["fhirVersion"] == "4.0.1"
    assert _count(metrics, "200") == 1


async def test_request_id_of_the_current_request_is_forwarded(
    httpx_mock: HTTPXMock, client: HapiClient
) -> None:
    httpx_mock.add_response(url=METADATA, json={"resourceType": "CapabilityStatement"})
    token = request_id_var.set("req-7")
    try:
        await client.capability_statement()
    finally:
        request_id_var.reset(token)

    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["X-Request-ID"] == "req-7"
    assert request.headers["Accept"] == "application/fhir+json"


async def test_answers_come_gzipped_and_no_cookie_goes_back(
    httpx_mock: HTTPXMock, client: HapiClient
) -> None:
    # A cookie HAPI (or a proxy before it) sets must not tie one caller's request to the next
    # caller's: the client keeps none.
    httpx_mock.add_response(
        url=f"{BASE}/Patient/1",
        json={"resourceType": "Patient", "id": "1"},
        headers={"Set-Cookie": "JSESSIONID=abc; Path=/"},
    )
    httpx_mock.add_response(url=f"{BASE}/Patient/2", json={"resourceType": "Patient", "id": "2"})

    assert (await client.read("Patient", "1"))["id"] == "1"
    assert (await client.read("Patient", "2"))["id"] == "2"

    first, second = httpx_mock.get_requests()
    assert "gzip" in first.headers["Accept-Encoding"]
    assert "Cookie" not in second.headers


@pytest.mark.parametrize(
    ("exception", "reason", "outcome"),
    [
        (httpx.ConnectError("refused"), "cannot connect (ConnectError)", "ConnectError"),
        (httpx.ReadTimeout("slow"), "no answer within the time-out", "ReadTimeout"),
        (httpx.RemoteProtocolError("garbage"), "the connection failed (RemoteProtocolError)", None),
    ],
)
async def test_transport_failures_become_hapi_unavailable(
    httpx_mock: HTTPXMock,
    client: HapiClient,
    metrics: Metrics,
    exception: Exception,
    reason: str,
    outcome: str | None,
) -> None:
    httpx_mock.add_exception(exception, url=METADATA)

    with pytest.raises(HapiUnavailableError) as caught:
        await client.capability_statement()

    assert caught.value.reason == reason
    assert caught.value.__cause__ is exception
    if outcome is not None:
        assert _count(metrics, outcome) == 1


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(503, text="Service Unavailable"), "/metadata answered 503"),
        (httpx.Response(200, text="<html>proxy login</html>"), "/metadata did not answer JSON"),
        (httpx.Response(200, json={"resourceType": "Bundle"}), "no CapabilityStatement"),
        (httpx.Response(200, json=["not", "an", "object"]), "no CapabilityStatement"),
    ],
)
async def test_wrong_answers_become_hapi_unavailable(
    httpx_mock: HTTPXMock, client: HapiClient, response: httpx.Response, reason: str
) -> None:
    httpx_mock.add_callback(lambda request: response, url=METADATA)

    with pytest.raises(HapiUnavailableError, match=reason):
        await client.capability_statement()


async def test_r4_check_asks_only_for_the_version(
    httpx_mock: HTTPXMock, client: HapiClient
) -> None:
    httpx_mock.add_response(
        url=f"{METADATA}?_elements=fhirVersion",
        json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"},
    )

    await client.check_fhir_r4()

    assert httpx_mock.get_request() is not None


@pytest.mark.parametrize("version", ["5.0.0", "4.3.0", None])
async def test_r4_check_rejects_other_fhir_versions(
    httpx_mock: HTTPXMock, client: HapiClient, version: str | None
) -> None:
    httpx_mock.add_response(
        url=f"{METADATA}?_elements=fhirVersion",
        json={"resourceType": "CapabilityStatement", "fhirVersion": version},
    )

    with pytest.raises(HapiUnavailableError, match=f"serves FHIR {version}, not R4"):
        await client.check_fhir_r4()


async def test_thirty_requests_at_once_keep_their_connections_open() -> None:
    # httpx's default pool closed an idle connection whenever more than 20 were open, so a
    # service under load opened a new connection to HAPI for about every second request.
    async with keepalive_server() as server:
        hapi = HapiClient(f"{server.url}/fhir", Metrics(), timeout=5.0)
        for _ in range(5):
            await asyncio.gather(*(hapi.read("Patient", "p") for _ in range(30)))
        await hapi.aclose()
    assert server.requests == 150
    assert server.connections <= 30
