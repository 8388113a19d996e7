"""RFC 9457 ``application/problem+json`` responses for the JSON endpoints, and their schema.

`refused` is the JSON facade's one handler of `fhir_service.errors`: every refusal of the
services below, and every failure of HAPI, becomes its problem here, with its HTTP status, and
the audit record hears why the caller was refused.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from fhir_service import errors
from fhir_service.api.audit_trail import refused_in

__all__ = [
    "PROBLEM_JSON",
    "DependencyCheck",
    "InvalidInput",
    "Problem",
    "problem_response",
    "refused",
    "said_to_caller",
    "status_of",
]

PROBLEM_JSON = "application/problem+json"

_log = logging.getLogger(__name__)
_STATUS: dict[type[errors.ServiceError], int] = {
    errors.RecordNotFoundError: 404,
    errors.InvalidRequestError: 400,
    errors.UnprocessableError: 422,
    errors.ForbiddenError: 403,
    errors.RecordConflictError: 409,
    errors.PreconditionFailedError: 412,
    errors.VersionRequiredError: 428,
    errors.UnavailableError: 503,
    errors.OutcomeUnknownError: 504,
    errors.UpstreamError: 502,
    errors.BrokenRecordError: 502,
}
_OUTCOME_UNKNOWN = (
    "The FHIR store did not answer in time: the outcome of this write is unknown. Retry with "
    "the same Idempotency-Key to find out what happened (without one, read the contract before "
    "writing again)."
)


def status_of(exc: errors.ServiceError, *, invalid: int) -> int:
    """The HTTP status of the nearest kind of ``exc`` in the tree; a malformed request gets
    ``invalid`` (FHIR says 400; the JSON facade, like FastAPI, answers 422)."""
    status = next(_STATUS[kind] for kind in type(exc).__mro__ if kind in _STATUS)
    return invalid if status == 400 else status


def said_to_caller(exc: errors.ServiceError, *, reads: bool) -> str:
    """What ``exc`` means for the caller, in both facades' words: for a failure of the FHIR
    store, whether anything was written (which only a read need not say)."""
    if isinstance(exc, errors.OutcomeUnknownError):
        return _OUTCOME_UNKNOWN
    if isinstance(exc, errors.UnavailableError):
        written = "" if reads else "; nothing was written"
        return f"{exc.detail[:1].upper()}{exc.detail[1:]}{written}. Retry after the pause."
    if isinstance(exc, errors.UpstreamError) and status_of(exc, invalid=400) == 502:
        # HAPI refused what this service asked: ours to mend, not the caller's; a write it
        # refused was refused whole.
        said = "failed to answer" if reads else "refused the write; nothing was written"
        return f"The FHIR store {said}."
    return exc.detail


def refused(request: Request, exc: errors.ServiceError) -> JSONResponse:
    """The problem+json answer to ``exc``; the audit record is told why the caller was refused."""
    if exc.refusal is not None:
        refused_in(request, exc.refusal)
    status = status_of(exc, invalid=422)
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    extensions: dict[str, Any] = {}
    if exc.current_version is not None:
        extensions["currentVersion"] = exc.current_version
    located = [i for i in exc.issues if i.get("expression")]
    if located:
        extensions["errors"] = [
            {"location": i["expression"][0], "message": i["diagnostics"]} for i in located
        ]
    detail = said_to_caller(exc, reads=request.method in ("GET", "HEAD"))
    if status >= 500:
        _log.warning(
            exc.title,
            extra={"reason": str(exc), "path": request.url.path, "outcome": exc.hapi_outcome},
        )
    return problem_response(status, exc.title, detail, headers=headers, **extensions)


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response; ``extensions`` become extra members of the problem object.

    An extension used here belongs in `Problem` too, or the OpenAPI document does not show it.
    """
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _absent_not_null(schema: dict[str, Any]) -> None:
    # Optional members are left out, never sent as null: a "default": null would say otherwise.
    for member in schema.get("properties", {}).values():
        if "default" in member and member["default"] is None:
            del member["default"]


class InvalidInput(BaseModel):
    """One place where a request does not match the API."""

    location: str = Field(
        description="Where: a JSON path into the body ($.patient.identifier.value, "
        "$.goals[0].description), else query.count or header.if-match."
    )
    message: str = Field(description="What is wrong there.")


class DependencyCheck(BaseModel):
    """The state of one dependency, in the problem of a ``/ready`` that is not ready."""

    # The same shape as the readiness check of health.py, which imports this module.
    model_config = ConfigDict(json_schema_extra=_absent_not_null)

    status: Literal["up", "down"]
    detail: str | SkipJsonSchema[None] = None


class Problem(BaseModel):
    """An RFC 9457 problem document: the body of every error answer of the JSON facade.

    Extension members appear only on the answers that name them. Clients ignore members they
    do not know (RFC 9457, section 3.2), so more may be added.
    """

    # SkipJsonSchema keeps null out of the optional members' types: absent, never null.
    model_config = ConfigDict(extra="allow", json_schema_extra=_absent_not_null)

    type: str = Field(
        description="A URI reference naming the kind of problem; about:blank when the status "
        "says it all.",
        json_schema_extra={"format": "uri-reference"},
    )
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599, description="The HTTP status of this answer.")
    detail: str = Field(description="What went wrong with this request, for a human.")
    instance: str | SkipJsonSchema[None] = Field(
        default=None, description="A URI reference naming this occurrence."
    )
    request_id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="On a 500: the request's id (also in X-Request-ID), to quote when reporting.",
    )
    current_version: int | SkipJsonSchema[None] = Field(
        default=None,
        alias="currentVersion",
        description="On a 409 of a contract write: the contract's current version.",
    )
    errors: list[InvalidInput] | SkipJsonSchema[None] = Field(
        default=None,
        description="On a 422 for a request that does not match the API: each place, and why.",
    )
    checks: dict[str, DependencyCheck] | SkipJsonSchema[None] = Field(
        default=None, description="On a 503 from /ready: every dependency's state."
    )
