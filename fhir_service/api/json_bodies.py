"""JSON request bodies read strictly: a repeated key or a ``NaN`` is refused, never guessed at.

Python's ``json`` keeps the last of two equal keys and reads ``NaN``, ``Infinity`` and
``-Infinity``, none of which RFC 8259 JSON has. A contract sent with ``"patient"`` twice would be
stored with whichever came last, while another reader of the same bytes may take the first.
`loads_strict` reads like ``json.loads`` but raises `StrictJsonError` naming every such place.

`StrictJsonMiddleware` applies it to every JSON body of every route, once, in one place:

- Why a middleware and not a custom ``APIRoute``/``Request`` class: a route class takes effect
  only on the routers built with it (``APIRouter(route_class=...)``); FastAPI runs an included
  router's routes as that router built them (``app.router.route_class`` does not reach them),
  so the app cannot impose one on all routers, and a router that forgot it would accept
  duplicates again. The middleware sees every request, today's routes and tomorrow's.
- Where: inside the security layer, so a refusal comes after the token check, only to callers
  allowed the route, and is audited with its status like any answer; inside the body limit, so
  the body it reads is already capped. A failure while reading (the limit's 413, a disconnect)
  is handed to the route where it reads the body, which answers as it would have.
- Parsed once where the service parses: the FHIR endpoint's routes take the value read here
  (`parsed_body`). FastAPI's own body parsing cannot be handed a value, so a JSON facade body is
  read again by FastAPI, with the C parser and no hooks, once this check has passed; the strict
  reading costs about as much again (0.1 ms for a contract's Bundle, 17 ms for 1 MB).

A body that is not JSON at all, or nested past the parser's recursion limit, passes through
untouched: the route refuses it as before, in its own terms.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_service.api.problems import problem_response
from fhir_service.contract import json_path

__all__ = [
    "LISTED_AT_MOST",
    "JsonPath",
    "JsonProblem",
    "Refusal",
    "StrictJsonError",
    "StrictJsonMiddleware",
    "loads_strict",
    "parsed_body",
    "shown_key",
]

LISTED_AT_MOST = 100
"""Problems listed in one answer: all a client's mistake makes, yet no amplifier of a 1 MB body."""

JsonPath = tuple[str | int, ...]
"""Where in the body: object keys and array indexes from the top."""

_PARSED = "strict_json_body"
_SHOWN_KEY_LENGTH = 80


@dataclass(frozen=True)
class JsonProblem:
    """One place where the body is not strict JSON, and what is wrong there."""

    path: JsonPath
    message: str


class StrictJsonError(ValueError):
    """The body is JSON to Python but not to RFC 8259: ``problems`` lists each place.

    ``value`` is the body as a lenient reader takes it (later keys win), for naming its parts.
    """

    def __init__(self, problems: list[JsonProblem], value: Any) -> None:
        super().__init__("; ".join(p.message for p in problems[:LISTED_AT_MOST]))
        self.problems = problems
        self.value = value


Refusal = Callable[[StrictJsonError], Response]
"""Turns a `StrictJsonError` into the answer of one facade."""


def shown_key(key: str | int) -> str:
    """A key as it is shown in a message: cut short when very long."""
    text = str(key)
    return text if len(text) <= _SHOWN_KEY_LENGTH else f"{text[:_SHOWN_KEY_LENGTH]}..."


def loads_strict(data: bytes | str) -> Any:
    """``json.loads(data)``, refusing repeated keys and ``NaN``/``Infinity``/``-Infinity``.

    >>> loads_strict('{"a": [1, {"b": 2}]}')
    {'a': [1, {'b': 2}]}
    >>> loads_strict('{"a": {"b": 1, "b": 2}, "c": NaN}')
    Traceback (most recent call last):
    ...
    fhir_service.api.json_bodies.StrictJsonError: duplicate key 'b'; NaN is not a JSON value

    Raises `StrictJsonError` listing every problem, ``ValueError`` when ``data`` is not JSON at
    all and ``RecursionError`` when it nests deeper than the parser goes, as ``json.loads`` does.
    """
    reader = _Reader()
    value = json.loads(data, object_pairs_hook=reader.object, parse_constant=reader.constant)
    if reader.found:
        raise StrictJsonError(_problems(value), value)
    return value


async def parsed_body(request: Request) -> Any:
    """The request's JSON body read strictly: the middleware's reading when it made one.

    Taken once: a second call parses the body again, so no caller sees another's changes.
    """
    state: dict[str, Any] = request.scope.get("state", {})
    if _PARSED in state:
        return state.pop(_PARSED)
    return loads_strict(await request.body())


class StrictJsonMiddleware:
    """Refuses JSON bodies that repeat a key or hold ``NaN``/``Infinity``, before any route.

    The answer is a 422 problem naming each place as ``$.goals[0].description``, as the
    facade's validation errors do. ``facades`` maps path prefixes (``/fhir``) whose routes read
    their bodies with `parsed_body` to their own answer; only their bodies' values are kept for
    them.
    """

    def __init__(self, app: ASGIApp, facades: Mapping[str, Refusal] | None = None) -> None:
        self.app = app
        self.facades = dict(facades or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        failure: Exception | None = None
        try:
            while not messages or _more(messages[-1]):
                messages.append(await receive())
        except Exception as exc:  # the body limit's 413: the route meets it where it reads
            failure = exc
        if failure is None and messages[-1]["type"] == "http.request":
            body = b"".join(m.get("body", b"") for m in messages)
            facade = self._facade(scope)
            try:
                value = loads_strict(body) if body else None
            except StrictJsonError as error:
                await (facade or _problem)(error)(scope, receive, send)
                return
            except (ValueError, RecursionError):
                pass  # not JSON at all: the route refuses it in its own terms
            else:
                if body and facade is not None:
                    scope.setdefault("state", {})[_PARSED] = value
        replay = iter(messages)

        async def replaying() -> Message:
            nonlocal failure
            message = next(replay, None)
            if message is not None:
                return message
            if failure is not None:
                raised, failure = failure, None
                raise raised
            return await receive()

        await self.app(scope, replaying, send)

    def _facade(self, scope: Scope) -> Refusal | None:
        path = str(scope.get("path", ""))
        for prefix, refusal in self.facades.items():
            if path == prefix or path.startswith(f"{prefix}/"):
                return refusal
        return None


def _problem(error: StrictJsonError) -> Response:
    listed = error.problems[:LISTED_AT_MOST]
    detail = "The body is not strict JSON (RFC 8259): each place is in errors."
    if len(error.problems) > len(listed):
        detail = (
            f"The body is not strict JSON (RFC 8259) in {len(error.problems)} places; "
            f"the first {len(listed)} are in errors."
        )
    errors = [
        {
            "location": json_path(
                step if isinstance(step, int) else shown_key(step) for step in problem.path
            ),
            "message": problem.message,
        }
        for problem in listed
    ]
    return problem_response(422, "Invalid request", detail, errors=errors)


def _is_json(scope: Scope) -> bool:
    # What FastAPI parses as JSON, and the FHIR endpoint's application/fhir+json.
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            media = value.decode("latin-1").split(";")[0].strip().lower()
            kind, _, subtype = media.partition("/")
            return kind == "application" and (subtype == "json" or subtype.endswith("+json"))
    return False


def _more(message: Message) -> bool:
    return message["type"] == "http.request" and bool(message.get("more_body", False))


class _Repeated(dict[str, Any]):
    """An object that repeated keys: the last value of each, and the ``earlier`` ones."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        values: dict[str, list[Any]] = {}
        for key, value in pairs:
            values.setdefault(key, []).append(value)
        self.earlier = {key: found[:-1] for key, found in values.items() if len(found) > 1}


@dataclass(frozen=True, eq=False)
class _NotJson:
    """Where the body said ``NaN``, ``Infinity`` or ``-Infinity``."""

    text: str


@dataclass(frozen=True)
class _RepeatedKey:
    key: str


class _Reader:
    """The parser's hooks for one body: they mark what is wrong, `_problems` finds where."""

    def __init__(self) -> None:
        self.found = False

    def object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        self.found = True
        return _Repeated(pairs)

    def constant(self, text: str) -> _NotJson:
        self.found = True
        return _NotJson(text)


def _problems(value: Any) -> list[JsonProblem]:
    """Every repeated key and non-JSON constant in ``value``, in the order the body has them."""
    found: list[JsonProblem] = []
    pending: list[tuple[Any, JsonPath]] = [(value, ())]
    while pending:  # a walk, not recursion: the body may nest as deep as the parser allows
        item, path = pending.pop()
        children: list[tuple[Any, JsonPath]] = []
        if isinstance(item, _NotJson):
            found.append(JsonProblem(path, f"{item.text} is not a JSON value"))
        elif isinstance(item, _RepeatedKey):
            found.append(JsonProblem(path, f"duplicate key '{shown_key(item.key)}'"))
        elif isinstance(item, dict):
            earlier = item.earlier if isinstance(item, _Repeated) else {}
            for key, child in item.items():
                if key in earlier:
                    children.append((_RepeatedKey(key), (*path, key)))
                    children += [(e, (*path, key)) for e in earlier[key]]
                children.append((child, (*path, key)))
        elif isinstance(item, list):
            children = [(child, (*path, index)) for index, child in enumerate(item)]
        pending += reversed(
            [c for c in children if isinstance(c[0], dict | list | _NotJson | _RepeatedKey)]
        )
    return found
