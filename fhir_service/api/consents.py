"""The patient's leaves for relatives: granted, listed and revoked by the patient with their own
token (`fhir_service.records.consents` says what a leave is and how it is kept)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from fhir_service.api.deps import ConsentsDep
from fhir_service.api.problems import PROBLEM_JSON
from fhir_service.contract import Identifier, Name
from fhir_service.records import Grant

__all__ = ["router"]

router = APIRouter(prefix="/consents", tags=["consents"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_NO_PLAN: dict[int | str, dict[str, Any]] = {
    404: {"description": "The patient has no plan here to share yet.", **_PROBLEM}
}
ConsentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The leave's id.")]


class RelativeIn(BaseModel):
    """The relative the patient gives leave to."""

    model_config = ConfigDict(extra="forbid")

    identifier: Identifier = Field(description="Their personnummer, fødselsnummer, ...")
    name: Name | None = None


class LeavePeriod(BaseModel):
    """When the leave holds."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime | None = Field(default=None, description="Not given: now.")
    end: AwareDatetime


class GrantIn(BaseModel):
    """A leave to grant."""

    model_config = ConfigDict(extra="forbid")

    relative: RelativeIn
    period: LeavePeriod
    may_report: bool = Field(
        default=False, description="Besides reading, report on the activities the relative owns."
    )


class GrantOut(BaseModel):
    """A leave the patient granted. ``fhir_user`` is what the relative's token names as
    ``fhirUser``."""

    id: str
    relative: Identifier | None
    fhir_user: str
    start: datetime
    end: datetime
    may_report: bool
    active: bool = Field(description="In force now: not revoked, and within its period.")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=GrantOut,
    responses={
        403: {"description": "Only the patient grants leave.", **_PROBLEM},
        422: {"description": "The leave is not complete.", **_PROBLEM},
        **_NO_PLAN,
    },
)
async def grant_consent(
    body: Annotated[GrantIn, Body()], consents: ConsentsDep, response: Response
) -> GrantOut:
    """Let a named relative read the patient's plan for a period, and optionally report on the
    activities they own. Stored as a FHIR Consent."""
    granted = await consents.grant(
        body.relative.identifier,
        body.relative.name,
        (body.period.start, body.period.end),
        body.may_report,
    )
    response.headers["Location"] = f"/consents/{granted.id}"
    return _out(granted)


@router.get("", response_model=list[GrantOut], responses=_NO_PLAN)
async def list_consents(consents: ConsentsDep) -> list[GrantOut]:
    """Every leave the patient granted, in force or not, newest first."""
    return [_out(g) for g in await consents.all()]


@router.post(
    "/{consent_id}/revoke",
    response_model=GrantOut,
    responses={404: {"description": "No such leave of the patient's, or no plan yet.", **_PROBLEM}},
)
async def revoke_consent(consent_id: ConsentId, consents: ConsentsDep) -> GrantOut:
    """End a leave now: the relative's next request is refused."""
    return _out(await consents.revoke(consent_id))


def _out(granted: Grant) -> GrantOut:
    return GrantOut(
        id=granted.id,
        relative=granted.relative,
        fhir_user=granted.related_person,
        start=granted.start,
        end=granted.end,
        may_report=granted.may_report,
        active=granted.active,
    )
