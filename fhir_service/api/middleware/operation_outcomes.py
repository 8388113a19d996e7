"""Errors under ``/fhir`` are OperationOutcomes, whichever layer refused the request.

The security layer, the body limit, FastAPI's validation and the last-resort error handler all
answer ``application/problem+json``, as the JSON facade wants. Below ``/fhir`` this middleware
turns such an answer into an OperationOutcome with the same status and headers, so no layer has
to know which facade it serves.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_service.api.fhir.outcomes import FHIR_JSON

__all__ = ["OperationOutcomeMiddleware", "issue_code"]

_PROBLEM_JSON = "application/problem+json"
_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    428: "required",
    429: "throttled",
    503: "transient",
}


def issue_code(status: int) -> str:
    """The FHIR issue-type code of an error answered with HTTP ``status``."""
    return _CODES.get(status, "exception" if status >= 500 else "invalid")


class OperationOutcomeMiddleware:
    """Rewrites problem+json answers below ``/fhir`` as OperationOutcomes."""

    def __init__(self, app: ASGIApp, prefix: str = "/fhir") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (
            path == self.prefix or path.startswith(f"{self.prefix}/")
        ):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=message["headers"])
                if headers.get("content-type", "").startswith(_PROBLEM_JSON):
                    start = message
                    return
                await send(message)
            elif message["type"] == "http.response.body" and start is not None:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    await _send_outcome(send, start, bytes(body), str(scope.get("method")), path)
            else:
                await send(message)

        await self.app(scope, receive, rewrite)


_INSTEAD = {
    "DELETE": "a contract's records are not deleted: leave a record out of the contract's next "
    "version, or end or revoke the contract (a transaction Bundle with its status)",
    "PATCH": "send the whole record with PUT",
    "POST": "a contract is created as a transaction Bundle of its records: POST /fhir",
}
"""What to use instead of an interaction the FHIR endpoint deliberately does not offer."""


def _not_allowed(method: str, path: str, allowed: str) -> str:
    said = f"{method} {path} is not offered"
    if allowed:
        said += f" (this address takes {allowed})"
    advice = _INSTEAD.get(method)
    return f"{said}: {advice}" if advice else said


async def _send_outcome(
    send: Send, start: Message, problem_body: bytes, method: str, path: str
) -> None:
    status = int(start["status"])
    try:
        problem: Any = json.loads(problem_body)
    except ValueError:
        problem = {}
    detail = problem.get("detail") if isinstance(problem, dict) else None
    title = problem.get("title") if isinstance(problem, dict) else None
    said = str(detail or title or "the request failed")
    if status == 405:
        said = _not_allowed(method, path, MutableHeaders(raw=start["headers"]).get("allow", ""))
    places = problem.get("errors") if isinstance(problem, dict) else None
    # Each place the request does not match the API is its own issue, saying where.
    said_at = [
        f"{place.get('location')}: {place.get('message')}"
        for place in places or []
        if isinstance(place, dict)
    ] or [said]
    issues: list[dict[str, Any]] = [
        {"severity": "error", "code": issue_code(status), "diagnostics": text} for text in said_at
    ]
    if isinstance(problem, dict) and problem.get("request_id"):
        for issue in issues:
            issue["details"] = {"text": f"request id {problem['request_id']}"}
    outcome = json.dumps({"resourceType": "OperationOutcome", "issue": issues}).encode()
    headers = MutableHeaders(raw=list(start["headers"]))
    headers["content-type"] = FHIR_JSON
    headers["content-length"] = str(len(outcome))
    await send({**start, "headers": headers.raw})
    await send({"type": "http.response.body", "body": outcome, "more_body": False})
