"""Why a request is refused, or why its outcome is not known: the one tree every part raises.

::

    ServiceError                 refused, or the outcome not known; ``issues`` say where and why
    ├── RecordNotFoundError      no such record, or none the caller may see (the same answer)
    ├── InvalidRequestError      the request itself is malformed: a parameter, a header
    ├── UnprocessableError       what was sent cannot be taken: codes, profiles, the contract
    ├── ForbiddenError           the caller's rights do not reach this
    ├── RecordConflictError      what is stored does not allow it now
    │   ├── StaleRecordError     the change names a version that is no longer current
    │   └── BusyError            another request holds what this one needs: retry after a pause
    ├── PreconditionFailedError  a condition the caller set (If-Match, If-None-Exist) fails
    ├── VersionRequiredError     the change must name the version it is based on
    ├── UnavailableError         a store this service needs did not answer: nothing was written
    ├── OutcomeUnknownError      a write was sent and no answer came: it may have been made
    ├── UpstreamError            the FHIR store refused or failed what this service asked of it
    └── BrokenRecordError        what is stored cannot be read as it must: an operator mends it

The parts raise their own kinds of these (the contract store's ``StaleVersionError`` is a
`StaleRecordError`, HAPI's client's ``HapiOutcomeUnknownError`` an `OutcomeUnknownError`),
each with what the caller needs to act: the issues in their terms, the current version, how
long to wait, and for the audit record why the caller was refused. A part that turns HAPI's
error into its own raises it ``from`` HAPI's, whose OperationOutcome stays at hand for the
operator's log (`ServiceError.hapi_outcome`). Each facade has one place that says them in its
own form (problem+json, OperationOutcome) and HTTP status; no part below the web layer knows a
status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "LISTED_AT_MOST",
    "BrokenRecordError",
    "BusyError",
    "ForbiddenError",
    "InvalidRequestError",
    "Issue",
    "OutcomeUnknownError",
    "PreconditionFailedError",
    "RecordConflictError",
    "RecordNotFoundError",
    "ServiceError",
    "StaleRecordError",
    "UnavailableError",
    "UnprocessableError",
    "UpstreamError",
    "VersionRequiredError",
    "issue",
]

Issue = dict[str, Any]

LISTED_AT_MOST = 100
"""The most problems one answer lists: an answer is no amplifier of a body made of mistakes."""


def issue(diagnostics: str, code: str, expression: str | None = None) -> Issue:
    """One error issue, as FHIR's OperationOutcome says it; ``expression`` is where."""
    found: Issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression is not None:
        found["expression"] = [expression]
    return found


class ServiceError(Exception):
    """The request is refused, or its outcome is not known: ``issues`` say where and why."""

    code = "processing"
    """The FHIR issue type of the refusal, when it has no issues of its own."""
    title = "Refused"
    """What kind of problem, in a few words (problem+json's ``title``)."""
    current_version: int | None = None
    """The version the record is at now, when the request named another or none."""
    retry_after: int | None = None
    """Seconds to wait before trying again, when trying again may succeed."""
    refusal: str | None = None
    """Why the caller was refused, for the audit record; safe to record."""

    def __init__(
        self, message: str, issues: Sequence[Issue] = (), *, title: str | None = None
    ) -> None:
        super().__init__(message)
        self.issues = _listed(list(issues)) if issues else [issue(message, self.code)]
        if title is not None:
            self.title = title

    @property
    def hapi_outcome(self) -> dict[str, Any] | None:
        """HAPI's OperationOutcome behind this refusal, when HAPI gave one: its own (HAPI's
        client's errors carry it as ``outcome``) or that of the error it was raised from."""
        cause: BaseException | None = self
        while cause is not None:
            found = getattr(cause, "outcome", None)
            if isinstance(found, dict):
                return found
            cause = cause.__cause__
        return None

    @property
    def detail(self) -> str:
        """What went wrong, for the caller; the message may say more, for the operator."""
        return str(self)

    final = True
    """Whether the same request would be refused the same way again: such an answer is kept
    for the retries of an Idempotency-Key. Not so when a retry may succeed or find out more."""


class RecordNotFoundError(ServiceError):
    code = "not-found"
    title = "Not Found"


class InvalidRequestError(ServiceError):
    code = "invalid"
    title = "Invalid request"


class UnprocessableError(ServiceError):
    code = "processing"
    title = "Unprocessable"


class ForbiddenError(ServiceError):
    code = "forbidden"
    title = "Forbidden"


class RecordConflictError(ServiceError):
    code = "conflict"
    title = "Not allowed now"


class StaleRecordError(RecordConflictError):
    title = "Stale version"


class BusyError(RecordConflictError):
    title = "Busy"
    retry_after = 1
    final = False


class PreconditionFailedError(ServiceError):
    code = "conflict"
    title = "Precondition Failed"


class VersionRequiredError(ServiceError):
    code = "required"
    title = "Precondition Required"


class UnavailableError(ServiceError):
    code = "transient"
    title = "Service Unavailable"
    retry_after = 5
    final = False


class OutcomeUnknownError(ServiceError):
    code = "timeout"
    title = "Gateway Timeout"
    retry_after = 5
    final = False


class UpstreamError(ServiceError):
    code = "exception"
    title = "Bad Gateway"
    final = False


class BrokenRecordError(ServiceError):
    code = "exception"
    title = "Stored record unreadable"
    final = False


def _listed(issues: list[Issue]) -> list[Issue]:
    """``issues``, each said once, the first `LISTED_AT_MOST` of them."""
    unique = list({(str(i.get("expression")), i["diagnostics"]): i for i in issues}.values())
    listed = unique[:LISTED_AT_MOST]
    if len(unique) > len(listed):
        more = f"{len(unique) - len(listed)} more places are not listed"
        listed.append(issue(more, "too-costly", "Bundle"))
    return listed
