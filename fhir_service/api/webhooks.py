"""Webhooks: EHRs register where contract changes are sent, list and remove their registrations.

Whose they are and what they may hear of: `fhir_service.records.webhooks`. A filter naming
another patient is refused with 403 rather than accepted to stay silent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response, status
from fastapi.openapi.models import Example
from pydantic import BaseModel, ConfigDict, Field

from fhir_service.api.deps import WebhooksDep
from fhir_service.api.problems import PROBLEM_JSON
from fhir_service.contract import Identifier
from fhir_service.mapping import kind_for
from fhir_service.sync import Registration

__all__ = ["router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

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
    webhooks: WebhooksDep,
    response: Response,
) -> WebhookOut:
    """Register a webhook; deliveries are signed with its secret (see the README).

    It hears only of contracts the token reaches: its patient's, or its care unit's.
    """
    registration = await webhooks.register(
        body.url,
        body.secret,
        patient=body.patient,
        care_unit=body.care_unit,
        description=body.description,
    )
    response.headers["Location"] = f"/webhooks/{registration.id}"
    return _out(registration)


@router.get("", response_model=list[WebhookOut], response_model_by_alias=True)
async def list_webhooks(webhooks: WebhooksDep) -> list[WebhookOut]:
    """Every webhook the caller registered."""
    return [_out(r) for r in await webhooks.all()]


@router.get(
    "/{webhook_id}",
    response_model=WebhookOut,
    response_model_by_alias=True,
    responses={404: {"description": "No such webhook of the caller's.", **_PROBLEM}},
)
async def read_webhook(webhook_id: WebhookId, webhooks: WebhooksDep) -> WebhookOut:
    """One of the caller's webhooks."""
    return _out(await webhooks.get(webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such webhook of the caller's.", **_PROBLEM}},
)
async def delete_webhook(webhook_id: WebhookId, webhooks: WebhooksDep) -> Response:
    """Remove one of the caller's webhooks; its undelivered events are dropped with it."""
    await webhooks.remove(webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
