"""Request bodies of the FHIR endpoint: FHIR JSON only, parsed with care.

The body limit has already capped the size. Nesting is checked before parsing, since a body of
ten thousand brackets would otherwise exhaust the parser's recursion, and every refusal says
what to send instead.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

__all__ = ["MAX_DEPTH", "BodyError", "fhir_body"]

MAX_DEPTH = 64
"""Deeper than any FHIR resource needs (a contract Bundle is under 15 levels)."""

_JSON_TYPES = frozenset({"application/fhir+json", "application/json"})


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
    raw = await request.body()
    if _depth(raw) > MAX_DEPTH:
        raise BodyError(400, "structure", f"the body is nested deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BodyError(400, "structure", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BodyError(400, "structure", "the body must be one FHIR resource, a JSON object")
    return body


def _depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw``, strings skipped."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
