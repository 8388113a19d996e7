"""The transports under the HAPI client, over real sockets: against the real HAPI, and against
local servers that misbehave as a HAPI or the network between can (no answer, a dropped or cut
connection), each failure told as the client has always told it."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from fhir_service.fhir import (
    HapiClient,
    HapiOutcomeUnknownError,
    HapiUnavailableError,
    InstrumentedTransport,
    RetryPolicy,
)
from fhir_service.fhir.transport import AiohttpTransport
from fhir_service.logs import request_id_var
from fhir_service.metrics import Metrics
from tests.keepalive_server import Answer, scripted
from tests.support import free_port

FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)
PATIENT = {"resourceType": "Patient", "id": "p"}


async def test_hapi_receives_the_request_id_and_the_call_is_measured(hapi_base_url: str) -> None:
    metrics = Metrics()
    transport = InstrumentedTransport(AiohttpTransport(max_connections=4), metrics)
    token = request_id_var.set("trace-me-42")
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(f"{hapi_base_url}/metadata?_elements=fhirVersion")
    finally:
        request_id_var.reset(token)

    # HAPI adopts a caller's X-Request-ID as its own request id and echoes it back.
    assert response.headers["X-Request-ID"] == "trace-me-42"
    assert response.json()["fhirVersion"] == "4.0.1"
    samples = {"method": "GET", "outcome": "200"}
    assert metrics.registry.get_sample_value("fhir_service_hapi_requests_total", samples) == 1
    assert (
        metrics.registry.get_sample_value(
            "fhir_service_hapi_request_duration_seconds_count", samples
        )
        == 1
    )


async def test_hapi_gzipped_search_is_read_whole(hapi_base_url: str) -> None:
    # HAPI compresses what it sends when asked to (httpx asks); the client reads it decoded.
    async with httpx.AsyncClient(transport=AiohttpTransport(max_connections=4)) as client:
        response = await client.get(f"{hapi_base_url}/metadata")
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.json()["resourceType"] == "CapabilityStatement"


# Local servers that answer as each test scripts them (tests.keepalive_server).


def _answer(body: bytes, *headers: str) -> Answer:
    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        head = [
            "HTTP/1.1 200 OK",
            "Content-Type: application/fhir+json",
            f"Content-Length: {len(body)}",
            *headers,
        ]
        writer.write("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        await writer.drain()

    return answer


OK = _answer(json.dumps(PATIENT).encode())


async def _hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
    writer.close()


async def _never(_: asyncio.StreamReader, __: asyncio.StreamWriter, ___: bytes) -> None:
    await asyncio.sleep(3600)


async def _cut_short(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b'{"resourceType":')
    await writer.drain()
    writer.close()


@asynccontextmanager
async def client(url: str, timeout: float = 5.0) -> AsyncIterator[HapiClient]:
    hapi = HapiClient(url, Metrics(), timeout=timeout, retry=FAST)
    try:
        yield hapi
    finally:
        await hapi.aclose()


async def test_a_request_reaches_the_server_as_the_client_built_it() -> None:
    async with scripted(OK) as server, client(f"{server.url}/fhir") as hapi:
        token = request_id_var.set("req-7")
        try:
            await hapi.search("CarePlan", [("identifier", "urn:oid:1.2|a b"), ("_include", "x:y")])
            await hapi.transaction({"resourceType": "Bundle", "type": "transaction"})
        finally:
            request_id_var.reset(token)

    search, transaction = server.received
    line, *header_lines = search.split(b"\r\n\r\n")[0].decode().split("\r\n")
    # The query as httpx encodes it, not encoded again on the way.
    assert line == "GET /fhir/CarePlan?identifier=urn%3Aoid%3A1.2%7Ca+b&_include=x%3Ay HTTP/1.1"
    headers = {n.lower(): v.strip() for n, _, v in (h.partition(":") for h in header_lines)}
    assert headers["accept"] == "application/fhir+json"
    assert headers["x-request-id"] == "req-7"
    head, body = transaction.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /fhir/ HTTP/1.1")
    assert b"content-type: application/fhir+json" in head.lower()
    assert json.loads(body) == {"resourceType": "Bundle", "type": "transaction"}
    # One connection, kept alive for both.
    assert server.connections == 1


async def test_a_gzipped_answer_is_decoded_and_its_headers_kept() -> None:
    body = gzip.compress(json.dumps(PATIENT).encode())
    answer = _answer(body, "Content-Encoding: gzip", 'ETag: W/"3"')
    async with scripted(answer) as server, client(f"{server.url}/fhir") as hapi:
        assert await hapi.read("Patient", "p") == PATIENT


async def test_nothing_listening_is_unavailable_and_nothing_was_sent() -> None:
    async with client(f"http://127.0.0.1:{free_port()}/fhir") as hapi:
        with pytest.raises(HapiUnavailableError, match=r"cannot connect \(ConnectError\)") as read:
            await hapi.read("Patient", "p")
        # Nothing reached HAPI: a write that cannot connect is known not to have been made.
        with pytest.raises(HapiUnavailableError) as write:
            await hapi.transaction({"resourceType": "Bundle", "type": "transaction"})
    assert not isinstance(read.value, HapiOutcomeUnknownError)
    assert not isinstance(write.value, HapiOutcomeUnknownError)


async def test_a_read_whose_connection_drops_is_tried_again() -> None:
    async with scripted(_hang_up, OK) as server, client(f"{server.url}/fhir") as hapi:
        assert await hapi.read("Patient", "p") == PATIENT
    assert server.requests == 2


async def test_a_write_whose_answer_is_lost_is_sent_once_and_its_outcome_unknown() -> None:
    # The first request is answered on a kept-alive connection; the write that follows on it
    # reaches the server, which hangs up: an HTTP client may send a GET again then, never a
    # POST, which may have been made.
    async with scripted(OK, _hang_up, OK) as server, client(f"{server.url}/fhir") as hapi:
        await hapi.read("Patient", "p")
        with pytest.raises(HapiOutcomeUnknownError):
            await hapi.transaction({"resourceType": "Bundle", "type": "transaction"})
    assert [r.split(b" ", 1)[0] for r in server.received] == [b"GET", b"POST"]


async def test_no_answer_in_time_is_unavailable_for_a_read_and_unknown_for_a_write() -> None:
    async with scripted(_never) as server, client(f"{server.url}/fhir", timeout=0.3) as hapi:
        with pytest.raises(HapiUnavailableError, match="no answer within the time-out") as read:
            await hapi.read("Patient", "p")
        with pytest.raises(HapiOutcomeUnknownError):
            await hapi.transaction({"resourceType": "Bundle", "type": "transaction"})
    assert not isinstance(read.value, HapiOutcomeUnknownError)
    # A read is tried again after a time-out; a write never is.
    assert [r.split(b" ", 1)[0] for r in server.received] == [b"GET"] * 3 + [b"POST"]


async def test_an_answer_cut_off_is_a_failed_connection() -> None:
    async with scripted(_cut_short) as server, client(f"{server.url}/fhir") as hapi:
        with pytest.raises(
            HapiUnavailableError, match=r"the connection failed \(RemoteProtocolError\)"
        ):
            await hapi.read("Patient", "p")
    assert server.requests == 3
