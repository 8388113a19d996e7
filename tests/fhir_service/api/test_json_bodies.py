"""Strict JSON bodies: a repeated key or a NaN is refused with every place, and nothing is written.

The parser is table-tested; the middleware on a small app and on the service against the real
HAPI. A dict cannot hold a key twice, so the bodies are the example contracts' JSON text with a
key repeated in it.
"""

from __future__ import annotations

import doctest
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from fhir_service.api import json_bodies
from fhir_service.api.json_bodies import (
    StrictJsonError,
    StrictJsonMiddleware,
    loads_strict,
    parsed_body,
)
from fhir_service.api.middleware.body_limit import BodyLimitMiddleware
from fhir_service.api.problems import PROBLEM_JSON, problem_response
from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.service_app import ready_app
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
CARE_UNIT = "hsa-id|SE2321000065-1254"
REPEATED = "__repeated_key__"
_JSON = {"Content-Type": "application/json"}
_FHIR_JSON = {"Content-Type": "application/fhir+json"}


def with_repeated_key(data: dict[str, Any], path: list[str | int], key: str, value: Any) -> str:
    """``data`` as JSON text whose object at ``path`` holds ``key`` a second time, as ``value``."""
    target: Any = data
    for step in path:
        target = target[step]
    target[REPEATED] = value
    return json.dumps(data).replace(json.dumps(REPEATED), json.dumps(key), 1)


# --- the parser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ('{"a": 1, "a": 2}', [(("a",), "duplicate key 'a'")]),
        ('{"a": 1, "a": 2, "a": 3}', [(("a",), "duplicate key 'a'")]),
        ('{"a": {"b": {"c": 1, "c": 1}}}', [(("a", "b", "c"), "duplicate key 'c'")]),
        (
            '{"goals": [{"k": 1}, {"k": 1, "d": "x", "d": "y"}]}',
            [(("goals", 1, "d"), "duplicate key 'd'")],
        ),
        ('[[{"a": 1}], [{"a": 1, "a": 1}]]', [((1, 0, "a"), "duplicate key 'a'")]),
        (
            '{"a": 1, "b": {"x": 1, "x": 2}, "a": 2, "c": [1, {"y": 1, "y": 2}]}',
            [
                (("a",), "duplicate key 'a'"),
                (("b", "x"), "duplicate key 'x'"),
                (("c", 1, "y"), "duplicate key 'y'"),
            ],
        ),
        # What the later value replaced is still the body's: its own repeats count too.
        (
            '{"p": {"q": 1, "q": 2}, "p": {}}',
            [(("p",), "duplicate key 'p'"), (("p", "q"), "duplicate key 'q'")],
        ),
        ('{"": 1, "": 2}', [(("",), "duplicate key ''")]),
        ('{"a\\u0062": 1, "ab": 2}', [(("ab",), "duplicate key 'ab'")]),
        ("NaN", [((), "NaN is not a JSON value")]),
        ('{"a": Infinity}', [(("a",), "Infinity is not a JSON value")]),
        ('{"a": [1, -Infinity]}', [(("a", 1), "-Infinity is not a JSON value")]),
        (
            '{"x": NaN, "x": 1, "y": [NaN]}',
            [
                (("x",), "duplicate key 'x'"),
                (("x",), "NaN is not a JSON value"),
                (("y", 0), "NaN is not a JSON value"),
            ],
        ),
    ],
)
def test_the_parser_names_every_repeated_key_and_non_json_constant(
    text: str, problems: list[tuple[tuple[str | int, ...], str]]
) -> None:
    with pytest.raises(StrictJsonError) as refused:
        loads_strict(text)

    assert [(p.path, p.message) for p in refused.value.problems] == problems


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "[]",
        '{"a": {"a": {"a": 1}}}',
        '[{"a": 1}, {"a": 1}]',
        '{"a": 1, "A": 2}',
        '{"n": 1e400, "m": -0.0, "s": "NaN"}',
        '"text"',
        "null",
    ],
)
def test_the_parser_reads_strict_json_as_json_loads_does(text: str) -> None:
    assert loads_strict(text) == json.loads(text)
    assert loads_strict(text.encode("utf-16")) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a" 1}', "{'a': 1}", "nan", "[1,]", b"\xff\xfe{"])
def test_text_that_is_not_json_at_all_is_a_plain_value_error(text: str | bytes) -> None:
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)) as refused:
        loads_strict(text)

    assert not isinstance(refused.value, StrictJsonError)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a": 1, "a": ' + "[" * 100_000 + "]" * 100_000 + "}"],
)
def test_deep_nesting_is_refused_as_before_even_around_a_repeated_key(text: str) -> None:
    with pytest.raises(RecursionError):
        json.loads(text)
    with pytest.raises(RecursionError):
        loads_strict(text)


def test_the_parsers_examples_hold() -> None:
    assert doctest.testmod(json_bodies).failed == 0


# --- the middleware on a small app ------------------------------------------------------------


class Note(BaseModel):
    text: str


LIMIT = 64 * 1024


def small_app(seen: list[Any]) -> httpx.AsyncClient:
    app = FastAPI()

    @app.post("/notes")
    async def create(note: Note, request: Request) -> dict[str, Any]:
        seen.append((note.text, await request.body()))
        return {"text": note.text}

    @app.post("/raw/{kind}")
    async def raw(request: Request) -> dict[str, Any]:
        first = await parsed_body(request)
        first["changed"] = True
        seen.append((first, await parsed_body(request)))
        return {"ok": True}

    def other(error: StrictJsonError) -> Any:
        return problem_response(400, "Other facade", str(len(error.problems)))

    wrapped = BodyLimitMiddleware(StrictJsonMiddleware(app, {"/raw": other}), max_bytes=LIMIT)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://test")


async def test_a_body_repeating_keys_is_refused_with_every_place_before_the_route() -> None:
    seen: list[Any] = []
    async with small_app(seen) as http:
        response = await http.post(
            "/notes",
            content='{"text": "a", "text": "b", "more": {"x": NaN}}',
            headers={"Content-Type": "application/json; charset=utf-8"},
        )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["errors"] == [
        {"location": "$.text", "message": "duplicate key 'text'"},
        {"location": "$.more.x", "message": "NaN is not a JSON value"},
    ]
    assert seen == []


async def test_a_strict_body_reaches_the_route_whole_and_once_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[bytes | str] = []
    strict = json_bodies.loads_strict
    monkeypatch.setattr(
        json_bodies, "loads_strict", lambda data: reads.append(data) or strict(data)
    )
    seen: list[Any] = []
    async with small_app(seen) as http:
        note = await http.post("/notes", content=b'{"text": "hej"}', headers=_JSON)
        raw = await http.post("/raw/x", content=b'{"a": [1]}', headers=_FHIR_JSON)

    assert (note.status_code, raw.status_code) == (200, 200)
    # The route's own read of the body (Idempotency-Key hashing) gets the bytes sent.
    assert seen[0] == ("hej", b'{"text": "hej"}')
    # A facade's route gets the middleware's value, once: a second call reads afresh.
    assert seen[1] == ({"a": [1], "changed": True}, {"a": [1]})
    assert reads == [b'{"text": "hej"}', b'{"a": [1]}', b'{"a": [1]}']


async def test_the_answer_below_a_prefix_is_that_prefixs_own() -> None:
    async with small_app([]) as http:
        response = await http.post(
            "/raw/x", content='{"a": 1, "a": 1, "b": 2, "b": 2}', headers=_JSON
        )

    assert (response.status_code, response.json()["title"]) == (400, "Other facade")
    assert response.json()["detail"] == "2"


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
async def test_bodies_not_sent_as_json_are_left_to_the_route(content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    async with small_app([]) as http:
        response = await http.post("/notes", content=b'{"text": 1, "text": 2}', headers=headers)

    # FastAPI's own answer: the body is not JSON to it, so not a note.
    assert response.status_code == 422
    assert "duplicate" not in response.text


async def test_a_body_that_is_not_json_gets_the_routes_own_answer() -> None:
    async with small_app([]) as http:
        broken = await http.post("/notes", content=b'{"text": ', headers=_JSON)
        nested = await http.post("/notes", content=b"[" * 50_000, headers=_JSON)

    assert broken.status_code == 422
    assert broken.json()["detail"][0]["type"] == "json_invalid"
    assert nested.status_code == 400


async def test_a_streamed_body_over_the_limit_still_gets_413() -> None:
    async def note() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(2 * LIMIT // 100):
            yield b"x" * 100
        yield b'"}'

    seen: list[Any] = []
    async with small_app(seen) as http:
        response = await http.post("/notes", content=note(), headers=_JSON)

    assert response.status_code == 413
    assert seen == []


# --- the service, against the real HAPI -------------------------------------------------------


@pytest.fixture(scope="module")
def service(
    conformance_loaded: str, tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[TestClient]:
    with ready_app(conformance_loaded, tmp_path_factory.mktemp("json_bodies"), issuer) as client:
        client.headers.update(issuer.headers("ehr", organization=CARE_UNIT))
        yield client


def _contract() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"json-{uuid.uuid4().hex[:16]}"
    return data


def _careplans(hapi_url: str, contract_id: str) -> int:
    found = httpx.get(
        f"{hapi_url}/CarePlan",
        params={"identifier": f"{urls.ID_CONTRACT}|{contract_id}", "_summary": "count"},
    )
    return int(found.json()["total"])


def test_a_contract_naming_its_patient_twice_is_refused_and_not_stored(
    service: TestClient, conformance_loaded: str
) -> None:
    contract = _contract()
    other = {
        **contract["patient"],
        "identifier": {"kind": "personnummer", "value": unique_personnummer()},
    }

    response = service.post(
        "/contracts", content=with_repeated_key(contract, [], "patient", other), headers=_JSON
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["errors"] == [
        {"location": "$.patient", "message": "duplicate key 'patient'"}
    ]
    assert _careplans(conformance_loaded, contract["id"]) == 0
    assert service.get(f"/contracts/{contract['id']}").status_code == 404


def test_every_repeated_key_and_nan_of_a_contract_is_named_at_once(
    service: TestClient, conformance_loaded: str
) -> None:
    contract = _contract()
    contract["goals"][0]["status"] = float("nan")
    text = with_repeated_key(contract, ["goals", 0], "description", "Another goal")
    text = text.replace('"id"', '"id": "first", "id"', 1)

    response = service.post("/contracts", content=text, headers=_JSON)

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"location": "$.id", "message": "duplicate key 'id'"},
        {"location": "$.goals[0].description", "message": "duplicate key 'description'"},
        {"location": "$.goals[0].status", "message": "NaN is not a JSON value"},
    ]
    assert "Python" not in response.text
    assert _careplans(conformance_loaded, contract["id"]) == 0


def test_a_change_repeating_a_key_is_refused_and_the_contract_stays_as_it_was(
    service: TestClient,
) -> None:
    contract = _contract()
    created = service.post("/contracts", json=contract)
    changed = with_repeated_key({**contract, "title": "First"}, [], "title", "Second")

    response = service.put(
        f"/contracts/{contract['id']}",
        content=changed,
        headers={**_JSON, "If-Match": created.headers["ETag"]},
    )
    read = service.get(f"/contracts/{contract['id']}")

    assert created.status_code == 201, created.text
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"location": "$.title", "message": "duplicate key 'title'"}
    ]
    assert read.headers["ETag"] == created.headers["ETag"]
    assert read.json()["title"] == contract["title"]


def test_a_webhook_naming_two_urls_is_refused_and_not_registered(service: TestClient) -> None:
    webhook = {"url": "https://a.example/hook", "secret": "s" * 32}

    response = service.post(
        "/webhooks",
        content=with_repeated_key(webhook, [], "url", "https://b.example/hook"),
        headers=_JSON,
    )

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["location"] == "$.url"
    assert all(w["url"] != "https://b.example/hook" for w in service.get("/webhooks").json())


def test_a_caller_without_a_token_is_refused_before_the_body_is_read(
    service: TestClient,
) -> None:
    text = with_repeated_key(_contract(), [], "patient", {})

    response = service.post(
        "/contracts", content=text, headers={**_JSON, "Authorization": "Bearer nonsense"}
    )

    assert response.status_code == 401
    assert "duplicate" not in response.text
