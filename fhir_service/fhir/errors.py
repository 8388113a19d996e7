"""What can go wrong talking to HAPI, as one tree of exceptions.

    HapiError
    ├── HapiUnavailableError          no usable answer: cannot connect, time-out, not a FHIR server
    │   └── HapiOutcomeUnknownError   a write was sent and no answer came: it may have been made
    └── HapiRequestError              HAPI answered with an error status (``status``, ``outcome``)
        ├── InvalidRequestError       400, 422: HAPI refused what was sent (``$validate`` aside)
        ├── NotFoundError             404
        ├── GoneError                 410: deleted
        ├── ConflictError             409: a concurrent write won, or a stale version in
        │                                  ``If-Match`` (HAPI 8.8 answers 409, not 412)
        ├── PreconditionFailedError   412: a conditional write's criteria match several
        └── ServerError               5xx

Each is also one of the service's `fhir_service.errors` (unavailable, outcome unknown, not
found, busy, upstream): they reach the caller as they are, saying what it means for them. Every
:class:`HapiRequestError` carries HAPI's ``OperationOutcome`` (when it sent one) and the
joined ``diagnostics`` of its issues. :func:`error_for` is the one place statuses become types.
"""

from __future__ import annotations

from typing import Any

import httpx

from fhir_service.errors import (
    BusyError,
    OutcomeUnknownError,
    RecordNotFoundError,
    UnavailableError,
    UpstreamError,
    issue,
)

__all__ = [
    "ConflictError",
    "GoneError",
    "HapiError",
    "HapiOutcomeUnknownError",
    "HapiRequestError",
    "HapiUnavailableError",
    "InvalidRequestError",
    "NotFoundError",
    "PreconditionFailedError",
    "ServerError",
    "error_for",
]


class HapiError(Exception):
    """Base of every error of the HAPI client."""


class HapiUnavailableError(HapiError, UnavailableError):
    """HAPI did not answer, or answered with something other than a FHIR server's reply.

    ``reason`` says what happened in words an operator can act on; the caller is told only
    that the FHIR store is unavailable.
    """

    said = "the FHIR store is unavailable"

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(
            f"HAPI FHIR at {base_url} is unavailable: {reason}", [issue(self.said, self.code)]
        )
        self.base_url = base_url
        self.reason = reason

    @property
    def detail(self) -> str:
        return self.said


class HapiOutcomeUnknownError(OutcomeUnknownError, HapiUnavailableError):
    """A write reached HAPI, or may have, and its answer never came (a time-out, a connection
    dropped mid-answer): whether it was made is not known. Never answer "nothing was written"
    to this; a retry made safe by an ``Idempotency-Key`` finds out."""

    said = "the FHIR store did not answer in time: whether the write was made is unknown"


class HapiRequestError(HapiError, UpstreamError):
    """HAPI answered with an error status; ``outcome`` is its OperationOutcome, if any.

    The caller is told what it means for them (``said``), never what HAPI said.
    """

    said = "the FHIR store refused the request"

    def __init__(
        self, status: int, diagnostics: str, outcome: dict[str, Any] | None = None
    ) -> None:
        super().__init__(
            f"HAPI FHIR answered {status}: {diagnostics}", [issue(self.said, self.code)]
        )
        self.status = status
        self.diagnostics = diagnostics
        self.outcome = outcome

    @property
    def detail(self) -> str:
        return self.said


class InvalidRequestError(HapiRequestError):
    """400 or 422: HAPI refused the request or the resource."""


class NotFoundError(RecordNotFoundError, HapiRequestError):
    """404: no such resource (or no such version)."""

    said = "no such resource"


class GoneError(RecordNotFoundError, HapiRequestError):
    """410: the resource was deleted."""

    said = "no such resource"


class ConflictError(BusyError, HapiRequestError):
    """409: another write won, or ``If-Match``/``ifMatch`` named a stale version."""

    said = (
        "Concurrent writes to records this one shares won every try; nothing was written. "
        "Retry after the pause"
    )


class PreconditionFailedError(HapiRequestError):
    """412: a conditional write's criteria matched more than one resource."""


class ServerError(UnavailableError, HapiRequestError):
    """5xx: HAPI failed (its transaction, if it was one, undone)."""

    said = "the FHIR store is unavailable"


_BY_STATUS: dict[int, type[HapiRequestError]] = {
    400: InvalidRequestError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    412: PreconditionFailedError,
    422: InvalidRequestError,
}


def error_for(response: httpx.Response) -> HapiRequestError:
    """The typed error for an error response, with HAPI's OperationOutcome and diagnostics."""
    outcome = _outcome(response)
    if outcome is not None:
        issues = outcome.get("issue") or []
        diagnostics = "; ".join(
            str(i.get("diagnostics") or i.get("code") or "") for i in issues if isinstance(i, dict)
        )
    else:
        diagnostics = response.text[:500] or response.reason_phrase
    status = response.status_code
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else HapiRequestError)
    return kind(status, diagnostics, outcome)


def _outcome(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return body
    return None
