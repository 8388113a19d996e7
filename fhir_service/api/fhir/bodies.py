"""Request bodies of the FHIR endpoint: FHIR JSON only, parsed with care.

The body limit has already capped the size. The parser refuses a bracket bomb by its own
recursion limit; nesting deeper than any FHIR resource needs is refused after parsing, by a walk
over the parsed values (far fewer than the body's bytes). A repeated key or a ``NaN`` is refused
(`fhir_service.api.json_bodies`) with one issue per place, its ``expression`` the FHIRPath of
the element: ``Bundle.entry[0].resource.subject``. Every refusal says what to send.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from fhir_service.api.fhir.outcomes import fhir_response
from fhir_service.api.json_bodies import (
    LISTED_AT_MOST,
    JsonPath,
    StrictJsonError,
    parsed_body,
    shown_key,
)

__all__ = ["MAX_DEPTH", "BodyError", "Issue", "fhir_body", "json_refusal", "parameter"]

MAX_DEPTH = 64
"""Deeper than any FHIR resource needs (a contract Bundle is under 15 levels)."""

Issue = tuple[str, str]
"""One place of a `BodyError`: what is wrong there, and its FHIRPath ``expression``."""

_JSON_TYPES = frozenset({"application/fhir+json", "application/json"})
_TOO_DEEP = f"the body is nested deeper than {MAX_DEPTH} levels"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SUMMARIZED = 5


class BodyError(Exception):
    """The body cannot be taken: ``status`` and FHIR issue ``code`` say how, the message why.

    ``issues``, when given, are the places it went wrong, each its own issue in `outcome`.
    """

    def __init__(self, status: int, code: str, message: str, issues: Sequence[Issue] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.issues = tuple(issues)

    def outcome(self) -> JSONResponse:
        """The OperationOutcome answering this refusal: one issue per place, else one."""
        issues = [
            {"severity": "error", "code": self.code, "diagnostics": d, "expression": [e]}
            for d, e in self.issues
        ] or [{"severity": "error", "code": self.code, "diagnostics": str(self)}]
        return fhir_response({"resourceType": "OperationOutcome", "issue": issues}, self.status)


async def fhir_body(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object, or :class:`BodyError`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        shown = content_type or "none"
        raise BodyError(415, "not-supported", f"Content-Type {shown}: send application/fhir+json")
    try:
        body = await parsed_body(request)
    except RecursionError:
        raise BodyError(400, "structure", _TOO_DEEP) from None
    except StrictJsonError as exc:
        raise _not_strict(exc) from None
    except ValueError as exc:
        raise BodyError(400, "structure", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BodyError(400, "structure", "the body must be one FHIR resource, a JSON object")
    if _deeper_than(body, MAX_DEPTH):
        raise BodyError(400, "structure", _TOO_DEEP)
    return body


def parameter(body: dict[str, Any], name: str) -> str | None:
    """The value of the operation parameter ``name`` in a Parameters body: a string, code or
    uri, a dateTime or instant as it is, an integer in figures, an Identifier as
    ``system|value``; None when not given."""
    if body.get("resourceType") != "Parameters":
        return None
    for given in body.get("parameter") or []:
        if not isinstance(given, dict) or given.get("name") != name:
            continue
        for kind in (
            "valueString",
            "valueCode",
            "valueUri",
            "valueToken",
            "valueDateTime",
            "valueInstant",
        ):
            if isinstance(given.get(kind), str):
                return str(given[kind])
        number = given.get("valueInteger", given.get("valuePositiveInt"))
        if isinstance(number, int) and not isinstance(number, bool):
            return str(number)
        identifier = given.get("valueIdentifier")
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
            return f"{identifier.get('system', '')}|{identifier['value']}"
    return None


def json_refusal(error: StrictJsonError) -> JSONResponse:
    """The FHIR endpoint's answer to a body that repeats keys or holds ``NaN``: 400, per place."""
    return _not_strict(error).outcome()


def _not_strict(error: StrictJsonError) -> BodyError:
    root = error.value.get("resourceType") if isinstance(error.value, dict) else None
    root = root if isinstance(root, str) and _NAME.fullmatch(root) else "Resource"
    issues = [(p.message, _expression(root, p.path)) for p in error.problems[:LISTED_AT_MOST]]
    summary = "; ".join(f"{message} at {where}" for message, where in issues[:_SUMMARIZED])
    if len(error.problems) > _SUMMARIZED:
        summary += f"; {len(error.problems) - _SUMMARIZED} more"
    if len(error.problems) > len(issues):
        issues.append((f"{len(error.problems) - len(issues)} more places are not listed", root))
    return BodyError(400, "structure", f"the body is not strict JSON: {summary}", issues)


def _expression(root: str, path: JsonPath) -> str:
    """``path`` as FHIRPath from ``root``: ``Bundle.entry[0].resource.subject``."""
    parts = [root]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _NAME.fullmatch(step):
            parts.append(f".{step}")
        else:  # FHIRPath's delimited identifier, for a key no element could have
            escaped = shown_key(step).replace("\\", "\\\\").replace("`", "\\`")
            parts.append(f".`{escaped}`")
    return "".join(parts)


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
