"""The body limit: bodies over the limit get 413, declared or streamed, before a route uses them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_service.api.middleware.body_limit import BodyLimitMiddleware
from fhir_service.api.problems import PROBLEM_JSON

LIMIT = 1024


class Echo:
    """A Starlette app whose one route reads the whole body and answers with its length."""

    def __init__(self) -> None:
        self.calls = 0
        self.app = Starlette(routes=[Route("/echo", self.echo, methods=["POST"])])

    async def echo(self, request: Request) -> JSONResponse:
        self.calls += 1
        return JSONResponse({"length": len(await request.body())})


async def read_all(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app (no exception handling of its own) that reads the body, then answers."""
    length, more = 0, True
    while more:
        message = await receive()
        length += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(length).encode()})


def client(app: ASGIApp) -> httpx.AsyncClient:
    wrapped = BodyLimitMiddleware(app, max_bytes=LIMIT)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://test")


async def chunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    """``total`` bytes in chunks of ``size``: streamed, so sent without a Content-Length."""
    sent = 0
    while sent < total:
        chunk = b"x" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


def assert_problem_413(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert (problem["status"], problem["title"]) == (413, "Content Too Large")
    assert f"{LIMIT} bytes" in problem["detail"]


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
async def test_a_body_within_the_limit_reaches_the_route_whole(size: int) -> None:
    echo = Echo()
    async with client(echo.app) as http:
        response = await http.post("/echo", content=b"x" * size)

    assert response.status_code == 200
    assert response.json() == {"length": size}
    assert echo.calls == 1


@pytest.mark.parametrize("size", [1, LIMIT - 1, LIMIT])
async def test_a_streamed_body_within_the_limit_reaches_the_route_whole(size: int) -> None:
    echo = Echo()
    async with client(echo.app) as http:
        response = await http.post("/echo", content=chunks(size))

    assert response.status_code == 200
    assert response.json() == {"length": size}


@pytest.mark.parametrize("size", [LIMIT + 1, 10 * LIMIT])
async def test_a_declared_length_over_the_limit_is_refused_before_the_route_runs(
    size: int,
) -> None:
    echo = Echo()
    async with client(echo.app) as http:
        response = await http.post("/echo", content=b"x" * size)

    assert_problem_413(response)
    assert response.headers["connection"] == "close"
    assert echo.calls == 0


async def test_a_declared_length_over_the_limit_is_refused_even_with_a_short_body() -> None:
    echo = Echo()
    async with client(echo.app) as http:
        response = await http.post(
            "/echo", content=b"x", headers={"Content-Length": str(LIMIT + 1)}
        )

    assert_problem_413(response)
    assert echo.calls == 0


@pytest.mark.parametrize("size", [LIMIT + 1, 10 * LIMIT])
async def test_a_streamed_body_over_the_limit_is_refused(size: int) -> None:
    echo = Echo()
    async with client(echo.app) as http:
        response = await http.post("/echo", content=chunks(size))

    # The route's own app turns the refusal (an HTTPException) into its 413.
    assert response.status_code == 413
    assert f"{LIMIT} bytes" in response.text


async def test_a_streamed_body_over_the_limit_is_refused_with_a_problem() -> None:
    async with client(read_all) as http:
        response = await http.post("/", content=chunks(LIMIT + 1))

    assert_problem_413(response)


@pytest.mark.parametrize("length", ["nonsense", "-1"])
async def test_a_false_declared_length_does_not_let_a_large_body_through(length: str) -> None:
    refusals: list[Message] = []

    async def body() -> Message:
        # One chunk over the limit, whatever the header claimed.
        return {"type": "http.request", "body": b"x" * (LIMIT + 1), "more_body": False}

    async def send(message: Message) -> None:
        refusals.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-length", length.encode())],
    }

    await BodyLimitMiddleware(read_all, max_bytes=LIMIT)(scope, body, send)

    assert refusals[0]["status"] == 413


async def test_a_refusal_after_the_answer_has_started_is_raised_not_answered() -> None:
    async def answers_first(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()

    async def body() -> Message:
        return {"type": "http.request", "body": b"x" * (LIMIT + 1), "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    with pytest.raises(HTTPException) as caught:
        await BodyLimitMiddleware(answers_first, max_bytes=LIMIT)(scope, body, send)

    assert caught.value.status_code == 413
    assert [m["status"] for m in sent] == [200]


async def test_other_scopes_than_http_pass_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    await BodyLimitMiddleware(app, max_bytes=LIMIT)({"type": "lifespan"}, receive, send)

    assert seen == ["lifespan"]


class Note(BaseModel):
    text: str


def fastapi_app(calls: list[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/notes")
    async def create(note: Note) -> dict[str, int]:
        calls.append(note.text)
        return {"length": len(note.text)}

    return app


async def test_a_fastapi_route_gets_a_small_body_parsed() -> None:
    calls: list[str] = []
    async with client(fastapi_app(calls)) as http:
        response = await http.post("/notes", json={"text": "hello"})

    assert (response.status_code, response.json()) == (200, {"length": 5})
    assert calls == ["hello"]


async def test_a_fastapi_route_refuses_a_streamed_body_over_the_limit_with_413() -> None:
    calls: list[str] = []

    async def note() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        async for chunk in chunks(2 * LIMIT):
            yield chunk
        yield b'"}'

    async with client(fastapi_app(calls)) as http:
        response = await http.post(
            "/notes", content=note(), headers={"Content-Type": "application/json"}
        )

    # Not 400 "error parsing the body" nor 422: the limit's own answer gets through.
    assert response.status_code == 413
    assert calls == []
