"""Every error path of the HAPI client: typed errors, which calls retry, paging, headers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_service.fhir import (
    ConflictError,
    GoneError,
    HapiClient,
    HapiOutcomeUnknownError,
    HapiRequestError,
    HapiUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    RetryPolicy,
    ServerError,
)
from fhir_service.metrics import Metrics

BASE = "http://hapi.test/fhir"
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)


def _outcome(text: str) -> dict[str, object]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }


@pytest.fixture
async def hapi() -> AsyncIterator[HapiClient]:
    # pytest-httpx answers in place of httpx's own transport.
    client = HapiClient(
        BASE, Metrics(), timeout=1.0, retry=FAST, transport=httpx.AsyncHTTPTransport()
    )
    yield client
    await client.aclose()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequestError),
        (404, NotFoundError),
        (409, ConflictError),
        (410, GoneError),
        (412, PreconditionFailedError),
        (422, InvalidRequestError),
        (500, ServerError),
        (418, HapiRequestError),
    ],
)
async def test_error_status_becomes_a_typed_error_with_the_outcome(
    httpx_mock: HTTPXMock, hapi: HapiClient, status: int, error: type[HapiRequestError]
) -> None:
    outcome = _outcome(f"HAPI-0000: status {status}")
    httpx_mock.add_response(url=f"{BASE}/CarePlan/1", status_code=status, json=outcome)

    with pytest.raises(error) as caught:
        await hapi.read("CarePlan", "1")

    assert type(caught.value) is error
    assert caught.value.status == status
    assert caught.value.outcome == outcome
    assert caught.value.diagnostics == f"HAPI-0000: status {status}"


async def test_error_without_outcome_keeps_the_body_text(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    httpx_mock.add_response(url=f"{BASE}/CarePlan/1", status_code=404, text="<html>nope</html>")

    with pytest.raises(NotFoundError) as caught:
        await hapi.read("CarePlan", "1")

    assert caught.value.outcome is None
    assert caught.value.diagnostics == "<html>nope</html>"


async def test_a_read_is_retried_until_hapi_answers(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    url = f"{BASE}/CarePlan/1"
    httpx_mock.add_response(url=url, status_code=503, json=_outcome("starting"))
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=url)
    httpx_mock.add_response(url=url, json={"resourceType": "CarePlan", "id": "1"})

    careplan = await hapi.read("CarePlan", "1")

    assert careplan["id"] == "1"
    assert len(httpx_mock.get_requests()) == 3


async def test_retries_are_bounded(httpx_mock: HTTPXMock, hapi: HapiClient) -> None:
    url = f"{BASE}/CarePlan/1"
    for _ in range(3):
        httpx_mock.add_response(url=url, status_code=503, json=_outcome("down"))

    with pytest.raises(ServerError):
        await hapi.read("CarePlan", "1")

    assert len(httpx_mock.get_requests()) == 3


async def test_a_client_error_is_not_retried(httpx_mock: HTTPXMock, hapi: HapiClient) -> None:
    httpx_mock.add_response(url=f"{BASE}/CarePlan/1", status_code=400, json=_outcome("bad id"))

    with pytest.raises(InvalidRequestError):
        await hapi.read("CarePlan", "1")

    assert len(httpx_mock.get_requests()) == 1


async def test_a_plain_create_is_not_repeated_after_a_lost_answer(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=f"{BASE}/Patient")

    with pytest.raises(HapiUnavailableError, match="no answer within the time-out"):
        await hapi.create({"resourceType": "Patient"})

    assert len(httpx_mock.get_requests()) == 1


async def test_a_plain_create_is_repeated_when_nothing_was_sent(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=f"{BASE}/Patient")
    httpx_mock.add_response(url=f"{BASE}/Patient", status_code=201, json={"id": "9"})

    created = await hapi.create({"resourceType": "Patient"})

    assert created == {"id": "9"}
    assert len(httpx_mock.get_requests()) == 2


@pytest.mark.parametrize(("idempotent", "requests"), [(True, 2), (False, 1)])
async def test_a_transaction_is_repeated_only_when_idempotent(
    httpx_mock: HTTPXMock, hapi: HapiClient, idempotent: bool, requests: int
) -> None:
    httpx_mock.add_response(url=f"{BASE}/", status_code=503, json=_outcome("busy"))
    if idempotent:
        httpx_mock.add_response(url=f"{BASE}/", json={"type": "transaction-response"})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}

    if idempotent:
        assert await hapi.transaction(bundle, idempotent=True) == {"type": "transaction-response"}
    else:
        with pytest.raises(ServerError):
            await hapi.transaction(bundle)

    assert len(httpx_mock.get_requests()) == requests


@pytest.mark.parametrize(
    ("then", "tries"),
    [
        (httpx.ConnectError("refused"), 3),
        # A write that found no answer in time is not sent a third time.
        (httpx.ReadTimeout("no answer"), 2),
        (httpx.Response(503, json=_outcome("starting")), 3),
        (httpx.Response(400, json=_outcome("refused")), 2),
    ],
    ids=["cannot-connect", "time-out", "hapi-5xx", "hapi-refuses-the-repeat"],
)
async def test_a_write_whose_first_try_may_have_reached_hapi_stays_outcome_unknown(
    httpx_mock: HTTPXMock, hapi: HapiClient, then: Exception | httpx.Response, tries: int
) -> None:
    # HAPI took the transaction and died before answering (kill -9): the retry of the
    # idempotent write cannot reach it, or HAPI answers it while it starts again. Either way
    # the first try may have written, so "nothing was written" would be a lie.
    httpx_mock.add_exception(httpx.RemoteProtocolError("peer closed"), url=f"{BASE}/")
    for _ in range(tries - 1):
        if isinstance(then, httpx.Response):
            httpx_mock.add_response(url=f"{BASE}/", status_code=then.status_code, json=then.json())
        else:
            httpx_mock.add_exception(then, url=f"{BASE}/")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}

    with pytest.raises(HapiOutcomeUnknownError):
        await hapi.transaction(bundle, idempotent=True)

    assert len(httpx_mock.get_requests()) == tries


async def test_a_conflict_after_a_lost_answer_stays_a_conflict_for_the_writer_to_read(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    # The repeat of a conditional create finds HAPI's word on what it holds: the store reads
    # the contract next and learns whether the first try made it.
    httpx_mock.add_exception(httpx.RemoteProtocolError("peer closed"), url=f"{BASE}/")
    httpx_mock.add_response(url=f"{BASE}/", status_code=409, json=_outcome("duplicate"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}

    with pytest.raises(ConflictError):
        await hapi.transaction(bundle, idempotent=True)


async def test_a_write_that_never_reached_hapi_is_unavailable_not_unknown(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    for _ in range(3):
        httpx_mock.add_exception(httpx.ConnectError("refused"), url=f"{BASE}/")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}

    with pytest.raises(HapiUnavailableError) as caught:
        await hapi.transaction(bundle, idempotent=True)

    assert not isinstance(caught.value, HapiOutcomeUnknownError)


def test_back_off_is_jittered_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.2, max_delay=2.0)

    delays = [policy.delay(4) for _ in range(200)]

    assert all(0 <= d <= 1.6 for d in delays)
    assert len(set(delays)) > 100
    assert policy.delay(1, retry_after=1.0) == 1.0
    assert policy.delay(1, retry_after=60.0) == 2.0


async def test_search_follows_next_links_through_our_base(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    # HAPI may name itself by another address (a proxy, a configured server address).
    foreign_next = "http://hapi-internal:8080/fhir?_getpages=abc&_getpagesoffset=2&_count=2"
    httpx_mock.add_response(
        url=f"{BASE}/Goal?identifier=s%7C1",
        json={
            "resourceType": "Bundle",
            "total": 3,
            "link": [{"relation": "next", "url": foreign_next}],
            "entry": [{"resource": {"id": "a"}}, {"resource": {"id": "b"}}],
        },
    )
    httpx_mock.add_response(
        url=f"{BASE}/?_getpages=abc&_getpagesoffset=2&_count=2",
        json={"resourceType": "Bundle", "entry": [{"resource": {"id": "c"}}]},
    )

    result = await hapi.search("Goal", [("identifier", "s|1")])

    assert [r["id"] for r in result.resources] == ["a", "b", "c"]
    assert (result.total, result.pages, result.truncated) == (3, 2, False)


async def test_history_follows_next_links_that_keep_their_path(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    # HAPI pages history by offset on the history path itself, unlike search pages.
    httpx_mock.add_response(
        url=f"{BASE}/CarePlan/_history?_count=1",
        json={
            "resourceType": "Bundle",
            "link": [
                {
                    "relation": "next",
                    "url": "http://elsewhere:8080/fhir/CarePlan/_history?_count=1&_offset=1",
                }
            ],
            "entry": [{"resource": {"id": "a"}}],
        },
    )
    httpx_mock.add_response(
        url=f"{BASE}/CarePlan/_history?_count=1&_offset=1",
        json={"resourceType": "Bundle", "entry": [{"resource": {"id": "b"}}]},
    )

    result = await hapi.history("CarePlan", params=[("_count", "1")])

    assert [r["id"] for r in result.resources] == ["a", "b"]


async def test_search_stops_at_the_page_cap_and_says_so(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    page = {
        "resourceType": "Bundle",
        "link": [{"relation": "next", "url": f"{BASE}?_getpages=x"}],
        "entry": [{"resource": {"id": "p"}}],
    }
    httpx_mock.add_response(url=f"{BASE}/Goal", json=page)
    httpx_mock.add_response(url=f"{BASE}/?_getpages=x", json=page)

    result = await hapi.search("Goal", max_pages=2)

    assert (result.pages, result.truncated, len(result.entries)) == (2, True, 2)
    assert len(httpx_mock.get_requests()) == 2


async def test_conditional_and_versioned_writes_send_their_headers(
    httpx_mock: HTTPXMock, hapi: HapiClient
) -> None:
    httpx_mock.add_response(url=f"{BASE}/Patient", status_code=201, json={"id": "1"})
    httpx_mock.add_response(url=f"{BASE}/Patient/1", json={"id": "1"})

    await hapi.create({"resourceType": "Patient"}, if_none_exist="identifier=s|v")
    await hapi.update({"resourceType": "Patient", "id": "1"}, if_match=3)

    create, update = httpx_mock.get_requests()
    assert create.headers["If-None-Exist"] == "identifier=s|v"
    assert create.headers["Content-Type"] == "application/fhir+json"
    assert json.loads(create.content) == {"resourceType": "Patient"}
    assert update.headers["If-Match"] == 'W/"3"'
