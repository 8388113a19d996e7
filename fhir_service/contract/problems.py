"""What is wrong with a contract, said in the caller's terms.

pydantic describes a failed validation for Python programmers ("Input should be a valid
dictionary or instance of Patient", "Value error, ..."). A caller of either facade wrote JSON,
not Python: each problem is said here as a sentence about the value they sent, and its place as
a JSON path (``$.goals[0].description``) that both facades translate into their own terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

__all__ = ["Problem", "described", "json_path", "problems_of"]

Location = Sequence[int | str]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Patterns of the model's constrained strings, said as what a value of them looks like.
_PATTERNS = {
    r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$": (
        "must be 1 to 64 letters, digits, '-' or '.', starting with a letter or digit"
    ),
    r"^[a-z][a-z\-]{0,63}$": "must be a code of lower-case letters and '-', such as 'exercise'",
    r"^[A-Z]{2,10}$": "must be a relationship code of the v3 RoleCode table, such as 'MTH'",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (a JSON path from the contract's root) and what, as a sentence."""

    path: str
    message: str


def problems_of(error: ValidationError, prefix: Location = ()) -> list[Problem]:
    """Every problem ``error`` found, each at its JSON path below ``prefix``."""
    return [
        Problem(json_path([*prefix, *detail["loc"]]), described(detail))
        for detail in error.errors(include_url=False)
    ]


def json_path(location: Iterable[int | str]) -> str:
    """``location`` as a JSON path: ``("goals", 0, "description")`` is
    ``$.goals[0].description``."""
    parts = ["$"]
    for step in location:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _NAME.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append("['" + step.replace("\\", "\\\\").replace("'", "\\'") + "']")
    return "".join(parts)


def described(detail: ErrorDetails) -> str:
    """The problem ``detail`` as a sentence about the value, with no Python name in it."""
    kind = detail["type"]
    context: dict[str, Any] = dict(detail.get("ctx") or {})
    if kind == "value_error":
        return str(context.get("error", "is not valid"))
    if kind == "assertion_error":
        return str(context.get("error", "is not valid"))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field here; leave it out or check its spelling"
    if kind == "string_pattern_mismatch":
        pattern = str(context.get("pattern", ""))
        return _PATTERNS.get(pattern, f"does not have the form {pattern}")
    if kind == "string_too_short":
        least = context.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must be at least {least} characters"
    if kind == "string_too_long":
        return f"is longer than {context.get('max_length')} characters"
    if kind == "too_long":
        most = context.get("max_length")
        return f"holds {context.get('actual_length')} items; at most {most} are allowed"
    if kind in ("enum", "literal_error"):
        return f"must be one of {context.get('expected')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        limit = next(iter(context.values()), "")
        return f"must be {bound} {limit}"
    return _TYPES.get(kind) or _by_prefix(kind)


_TYPES = {
    "string_type": "must be a string",
    "string_unicode": "must be a string of valid Unicode",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a JSON array",
    "tuple_type": "must be a JSON array",
    "date_type": "must be a date, YYYY-MM-DD",
    "date_parsing": "must be a date, YYYY-MM-DD",
    "date_from_datetime_parsing": "must be a date, YYYY-MM-DD",
    "date_from_datetime_inexact": "must be a date, YYYY-MM-DD, without a time",
    "datetime_type": "must be a date and time with a time zone, 2026-03-01T09:00:00+01:00",
    "datetime_parsing": "must be a date and time with a time zone, 2026-03-01T09:00:00+01:00",
    "datetime_from_date_parsing": (
        "must be a date and time with a time zone, 2026-03-01T09:00:00+01:00"
    ),
    "timezone_aware": "must name its time zone, 2026-03-01T09:00:00+01:00",
    "frozen_instance": "cannot be changed",
    "json_invalid": "is not valid JSON",
    "json_type": "must be JSON",
}


def _by_prefix(kind: str) -> str:
    # The families pydantic has many members of; anything else is said plainly.
    for prefix, sentence in (
        ("date", "must be a date, YYYY-MM-DD"),
        ("datetime", "must be a date and time with a time zone, 2026-03-01T09:00:00+01:00"),
        ("int", "must be a whole number"),
        ("float", "must be a number"),
        ("url", "must be an absolute URL"),
        ("uuid", "must be a UUID"),
    ):
        if kind.startswith(prefix):
            return sentence
    return "is not a valid value here"
