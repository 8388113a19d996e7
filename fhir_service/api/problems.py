"""RFC 9457 ``application/problem+json`` responses for the JSON endpoints, and their schema."""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

__all__ = ["PROBLEM_JSON", "DependencyCheck", "InvalidInput", "Problem", "problem_response"]

PROBLEM_JSON = "application/problem+json"


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
