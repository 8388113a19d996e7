"""Webhooks: EHRs register where contract changes are sent, list and remove their registrations.

A webhook belongs to the caller who registered it: others neither see nor remove it. It hears
only of contracts the registering token could read (its patient's, or those its care unit is
responsible for); a filter naming another patient or care unit is refused with 403 rather than
accepted to stay silent.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response, status
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from fhir_service.api.deps import AccessDep, AuditTrailDep, NotificationsDep
from fhir_service.api.problems import PROBLEM_JSON, problem_response
from fhir_service.contract import Identifier, IdentifierKind
from fhir_service.mapping import kind_for, system_of
from fhir_service.security import Compartment, Denial
from fhir_service.sync import InvalidWebhookError, Reach, Registration

__all__ = ["router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

_ORGANIZATION_KINDS = frozenset({IdentifierKind.HSA_ID, IdentifierKind.ORGANISASJONSNUMMER})
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}

WebhookId = Annotated[str, Path(pattern=r"^[0-9a-f\-]{36}$", description="The webhook's id.")]


class WebhookIn(BaseModel):
    """A webhook to register. Without filters it receives every contract change."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Where to POST events; https, no credentials in the URL.")
    secret: str = Field(
        min_length=24,
        max_length=200,
        description="Key of the HMAC-SHA256 signature on every delivery; keep it random.",
    )
    patient: Identifier | None = Field(
        default=None, description="Only changes of this patient's contracts."
    )
    care_unit: Identifier | None = Field(
        default=None,
        alias="careUnit",
        description="Only changes of contracts this care unit (HSA-id, organisasjonsnummer) "
        "takes part in.",
    )
    description: str | None = Field(default=None, max_length=500)


_REGISTRATION_EXAMPLES = {
    "care-unit": Example(
        summary="A care unit's EHR hears of the contracts its unit takes part in",
        value={
            "url": "https://ehr.region.example/hooks/patient-contracts",
            "secret": "replace-with-at-least-24-random-characters",
            "careUnit": {"kind": "hsa-id", "value": "SE2321000065-1254"},
            "description": "Keeps the EHR's view of the care plans current",
        },
    )
}


class WebhookOut(BaseModel):
    """A registered webhook; the secret is never shown again."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    url: str
    patient: Identifier | None
    care_unit: Identifier | None = Field(serialization_alias="careUnit")
    description: str | None
    created_at: datetime = Field(serialization_alias="createdAt")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookOut,
    response_model_by_alias=True,
    responses={
        403: {"description": "A filter names a patient the token does not reach.", **_PROBLEM},
        422: {"description": "The target or a filter is not acceptable.", **_PROBLEM},
    },
)
async def register_webhook(
    body: Annotated[WebhookIn, Body(openapi_examples=_REGISTRATION_EXAMPLES)],
    notifications: NotificationsDep,
    access: AccessDep,
    trail: AuditTrailDep,
    response: Response,
) -> WebhookOut | JSONResponse:
    """Register a webhook; deliveries are signed with its secret (see the README).

    It hears only of contracts the token reaches: its patient's, or its care unit's.
    """
    if body.patient is not None and body.patient.kind in _ORGANIZATION_KINDS:
        return _invalid("patient must be a patient's identifier, not an organization's")
    if body.care_unit is not None and body.care_unit.kind not in _ORGANIZATION_KINDS:
        return _invalid("careUnit must be an organization's HSA-id or organisasjonsnummer")
    compartment = access.compartment
    if compartment.patient is not None and body.patient not in (None, compartment.patient):
        trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
        return problem_response(403, "Forbidden", Denial.OUTSIDE_COMPARTMENT.value)
    try:
        registration = await asyncio.to_thread(
            notifications.registry.register,
            body.url,
            body.secret,
            owner=trail.caller.key,
            reach=_reach(compartment),
            patient_identifier=_token(body.patient),
            care_unit=_token(body.care_unit),
            description=body.description,
        )
    except InvalidWebhookError as exc:
        return _invalid(str(exc))
    response.headers["Location"] = f"/webhooks/{registration.id}"
    return _out(registration)


@router.get("", response_model=list[WebhookOut], response_model_by_alias=True)
async def list_webhooks(notifications: NotificationsDep, trail: AuditTrailDep) -> list[WebhookOut]:
    """Every webhook the caller registered."""
    registrations = await asyncio.to_thread(notifications.registry.list, trail.caller.key)
    return [_out(r) for r in registrations]


@router.get(
    "/{webhook_id}",
    response_model=WebhookOut,
    response_model_by_alias=True,
    responses={404: {"description": "No such webhook of the caller's.", **_PROBLEM}},
)
async def read_webhook(
    webhook_id: WebhookId, notifications: NotificationsDep, trail: AuditTrailDep
) -> WebhookOut | JSONResponse:
    """One of the caller's webhooks."""
    registry = notifications.registry
    registration = await asyncio.to_thread(registry.get, webhook_id, trail.caller.key)
    if registration is None:
        return _not_found(webhook_id)
    return _out(registration)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such webhook of the caller's.", **_PROBLEM}},
)
async def delete_webhook(
    webhook_id: WebhookId, notifications: NotificationsDep, trail: AuditTrailDep
) -> Response:
    """Remove one of the caller's webhooks; its undelivered events are dropped with it."""
    registry = notifications.registry
    if not await asyncio.to_thread(registry.remove, webhook_id, trail.caller.key):
        return _not_found(webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _token(identifier: Identifier | None) -> str | None:
    return None if identifier is None else f"{system_of(identifier)}|{identifier.value}"


def _reach(compartment: Compartment) -> Reach:
    return Reach(
        patient=_token(compartment.patient), responsible_unit=_token(compartment.organization)
    )


def _identifier(token: str | None) -> Identifier | None:
    if token is None:
        return None
    system, _, value = token.partition("|")
    kind = kind_for(system)
    return None if kind is None else Identifier(kind=kind, value=value)


def _out(registration: Registration) -> WebhookOut:
    return WebhookOut(
        id=registration.id,
        url=registration.url,
        patient=_identifier(registration.patient_identifier),
        care_unit=_identifier(registration.care_unit),
        description=registration.description,
        created_at=registration.created_at,
    )


def _invalid(detail: str) -> JSONResponse:
    return problem_response(422, "Invalid webhook", detail)


def _not_found(webhook_id: str) -> JSONResponse:
    return problem_response(404, "Not Found", f"no webhook {webhook_id!r}")
