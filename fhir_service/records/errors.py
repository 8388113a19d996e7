"""Why the caller's records refused a request, in FHIR's terms.

::

    RecordsError                  the request is refused; nothing was written
    ├── RecordNotFoundError       no such record, or none the caller may see (the same answer)
    ├── InvalidRequestError       the request itself is malformed (a parameter, a header)
    ├── UnprocessableError        the records sent cannot be taken (profiles, the contract)
    ├── ForbiddenError            the caller's rights do not reach this
    ├── RecordConflictError       the records as stored do not allow it now
    ├── PreconditionFailedError   a condition the caller set (If-Match, If-None-Exist) fails
    └── VersionRequiredError      the change must name the version it is based on

Each carries the FHIR issues that say what is wrong, one per place, with its ``expression``
where there is one. The web layer turns each into its OperationOutcome (and its HTTP status)
in one place; the store's own refusals and HAPI's failures reach that place unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "LISTED_AT_MOST",
    "ForbiddenError",
    "InvalidRequestError",
    "PreconditionFailedError",
    "RecordConflictError",
    "RecordNotFoundError",
    "RecordsError",
    "UnprocessableError",
    "VersionRequiredError",
    "issue",
]

Issue = dict[str, Any]

LISTED_AT_MOST = 100
"""The most problems one answer lists: an answer is no amplifier of a body made of mistakes."""


def issue(diagnostics: str, code: str, expression: str | None = None) -> Issue:
    """One error issue of an OperationOutcome."""
    found: Issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression is not None:
        found["expression"] = [expression]
    return found


class RecordsError(Exception):
    """The request is refused: ``issues`` say where and why, else the message does."""

    code = "processing"
    """The FHIR issue type of the refusal, when it has no issues of its own."""

    def __init__(self, message: str, issues: Sequence[Issue] = ()) -> None:
        super().__init__(message)
        self.issues = _listed(list(issues)) if issues else [issue(message, self.code)]


class RecordNotFoundError(RecordsError):
    code = "not-found"


class InvalidRequestError(RecordsError):
    code = "invalid"


class UnprocessableError(RecordsError):
    code = "processing"


class ForbiddenError(RecordsError):
    code = "forbidden"


class RecordConflictError(RecordsError):
    code = "conflict"


class PreconditionFailedError(RecordsError):
    code = "conflict"


class VersionRequiredError(RecordsError):
    code = "required"


def _listed(issues: list[Issue]) -> list[Issue]:
    """``issues``, each said once, the first `LISTED_AT_MOST` of them."""
    unique = list({(str(i.get("expression")), i["diagnostics"]): i for i in issues}.values())
    listed = unique[:LISTED_AT_MOST]
    if len(unique) > len(listed):
        more = f"{len(unique) - len(listed)} more places are not listed"
        listed.append(issue(more, "too-costly", "Bundle"))
    return listed
