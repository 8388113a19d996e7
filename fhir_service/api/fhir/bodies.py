"""Request bodies of the FHIR endpoint: FHIR JSON only, parsed with care.

The body limit has already capped the size. The parser refuses a bracket bomb by its own
recursion limit; nesting deeper than any FHIR resource needs is refused after parsing, by a walk
over the parsed values (far fewer than the body's bytes). Every refusal says what to send.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

__all__ = ["MAX_DEPTH", "BodyError", "fhir_body"]

MAX_DEPTH = 64
"""Deeper than any FHIR resource needs (a contract Bundle is under 15 levels)."""

_JSON_TYPES = frozenset({"application/fhir+json", "application/json"})
_TOO_DEEP = f"the body is nested deeper than {MAX_DEPTH} levels"


class BodyError(Exception):
    """The body cannot be taken: ``status`` and FHIR issue ``code`` say how, the message why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def fhir_body(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object, or :class:`BodyError`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        shown = content_type or "none"
        raise BodyError(415, "not-supported", f"Content-Type {shown}: send application/fhir+json")
    try:
        body = json.loads(await request.body())
    except RecursionError:
        raise BodyError(400, "structure", _TOO_DEEP) from None
    except ValueError as exc:
        raise BodyError(400, "structure", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BodyError(400, "structure", "the body must be one FHIR resource, a JSON object")
    if _deeper_than(body, MAX_DEPTH):
        raise BodyError(400, "structure", _TOO_DEEP)
    return body


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest more than ``limit`` levels."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending += [(c, depth + 1) for c in children if isinstance(c, dict | list)]
    return False
