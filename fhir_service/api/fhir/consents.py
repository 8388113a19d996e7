"""The patient's leaves for relatives on the FHIR endpoint: the same leaves as ``/consents``
(`fhir_service.records.consents`), as the FHIR ``Consent`` resources they are stored as.

- ``GET /fhir/Consent``: the patient's leaves, newest first, with each one's RelatedPerson.
- ``GET /fhir/Consent/{id}``: one of them.
- ``POST /fhir/Consent``: give a leave. What is read of the Consent: ``provision.actor`` (one,
  the relative: a logical reference by national identifier, with ``display`` as their name, or
  ``RelatedPerson/<id>`` of a relative of this patient's), ``provision.period`` (``end``
  required; ``start`` by default now; a date alone is that day at the clinic, from its start or
  to its end), ``provision.action`` (``access``, and ``correct`` to let the relative report on
  their own activities). ``patient``, when given, must be the caller. The service writes the
  rest (scope, category, policy, performer), as it does for ``/consents``.
- ``PUT /fhir/Consent/{id}`` with ``status`` ``inactive``: revoke it. Nothing else of a leave
  changes; give a new one instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from fhir_service.api.deps import ConsentsDep
from fhir_service.api.fhir.answers import answer, bundle_answer, resource_answer
from fhir_service.api.fhir.bodies import fhir_body
from fhir_service.api.fhir.outcomes import FHIR_JSON
from fhir_service.api.plan_page import CLINIC_TIME
from fhir_service.contract import Identifier, Name
from fhir_service.errors import Issue, UnprocessableError, issue
from fhir_service.mapping import kind_for

__all__ = ["router"]

router = APIRouter(prefix="/fhir", tags=["fhir"])

Resource = dict[str, Any]
ConsentId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The Consent's logical id.")
]
_ACTIONS = "http://terminology.hl7.org/CodeSystem/consentaction"
_WRITTEN: dict[int | str, dict[str, Any]] = {201: {"content": {FHIR_JSON: {}}}}


@router.get(
    "/Consent",
    name="fhir_search_Consent",
    summary="search Consent",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def search(request: Request, consents: ConsentsDep) -> Response:
    """The patient's leaves for relatives, newest first, with the relatives' RelatedPersons."""

    async def work() -> Response:
        bundle = await consents.bundle()
        return bundle_answer(request, consents.hapi.base_url, bundle, "Consent/_page")

    return await answer(request, work)


@router.get(
    "/Consent/{consent_id}",
    name="fhir_read_Consent",
    summary="read Consent",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def read(consent_id: ConsentId, request: Request, consents: ConsentsDep) -> Response:
    """One of the patient's leaves."""

    async def work() -> Response:
        return resource_answer(request, consents.hapi.base_url, await consents.record(consent_id))

    return await answer(request, work)


@router.post(
    "/Consent",
    name="fhir_create_Consent",
    summary="create Consent",
    response_class=Response,
    responses=_WRITTEN,
)
async def create(request: Request, consents: ConsentsDep) -> Response:
    """Give a relative leave to read the plan (and report on their own activities)."""

    async def work() -> Response:
        asked = _leave(await fhir_body(request))
        relative = asked.relative
        if relative is None:
            relative = await consents.relative_named(str(asked.related_person))
        granted = await consents.grant(
            relative, asked.name, (asked.start, asked.end), asked.may_report, named=asked.patient
        )
        return resource_answer(request, consents.hapi.base_url, granted.record, 201)

    return await answer(request, work)


@router.put(
    "/Consent/{consent_id}",
    name="fhir_update_Consent",
    summary="update Consent",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def update(consent_id: ConsentId, request: Request, consents: ConsentsDep) -> Response:
    """Revoke a leave: the same Consent with ``status`` ``inactive``."""

    async def work() -> Response:
        resource = await fhir_body(request)
        problems = _kind_and_id(resource, consent_id)
        if resource.get("status") != "inactive":
            said = "a leave changes only by being revoked: status inactive; give a new one instead"
            problems.append(issue(said, "business-rule", "Consent.status"))
        if problems:
            raise UnprocessableError("the Consent cannot be written", problems)
        revoked = await consents.revoke(consent_id)
        return resource_answer(request, consents.hapi.base_url, revoked.record)

    return await answer(request, work)


@dataclass(frozen=True, slots=True)
class _Asked:
    """A leave as a Consent asks it."""

    relative: Identifier | None
    related_person: str | None
    name: Name | None
    start: datetime | None
    end: datetime
    may_report: bool
    patient: Resource | None


def _leave(resource: Resource) -> _Asked:
    """What ``resource`` asks for, or every problem with it at once."""
    problems = _kind_and_id(resource, None)
    if resource.get("status", "active") != "active":
        problems.append(issue("a new leave is active", "value", "Consent.status"))
    provision = _object(resource.get("provision"))
    if provision.get("type", "permit") != "permit":
        problems.append(issue("a leave permits", "value", "Consent.provision.type"))
    actors = provision.get("actor")
    relative, related_person, name = None, None, None
    if not isinstance(actors, list) or len(actors) != 1:
        said = "a leave names one relative: provision.actor, by identifier or RelatedPerson"
        problems.append(issue(said, "required", "Consent.provision.actor"))
    else:
        reference = _object(_object(actors[0]).get("reference"))
        relative, related_person, name = _relative(reference, problems)
    period = _object(provision.get("period"))
    start = _moment(period.get("start"), time(0), "Consent.provision.period.start", problems)
    end = _moment(period.get("end"), time(23, 59, 59), "Consent.provision.period.end", problems)
    if period.get("end") is None:
        said = "a leave ends: provision.period.end"
        problems.append(issue(said, "required", "Consent.provision.period.end"))
    codes = _action_codes(provision.get("action"), problems)
    if problems or end is None:
        raise UnprocessableError("the Consent is not a leave this service gives", problems)
    patient = resource.get("patient")
    return _Asked(
        relative=relative,
        related_person=related_person,
        name=name,
        start=start,
        end=end,
        may_report="correct" in codes,
        patient=patient if isinstance(patient, dict) else None,
    )


def _kind_and_id(resource: Resource, consent_id: str | None) -> list[Issue]:
    problems = []
    if resource.get("resourceType") != "Consent":
        problems.append(issue("the body is not a Consent", "invalid", "Consent.resourceType"))
    if consent_id is not None and resource.get("id") != consent_id:
        said = "the body's id differs from the one in the URL"
        problems.append(issue(said, "invalid", "Consent.id"))
    return problems


def _relative(
    reference: Resource, problems: list[Issue]
) -> tuple[Identifier | None, str | None, Name | None]:
    where = "Consent.provision.actor[0].reference"
    named = reference.get("reference")
    if isinstance(named, str) and named.startswith("RelatedPerson/"):
        return None, named, None
    given = _object(reference.get("identifier"))
    kind = kind_for(str(given.get("system", "")))
    try:
        if kind is None:
            raise ValueError("unknown system")
        relative = Identifier(kind=kind, value=str(given.get("value", "")))
    except ValueError:
        said = (
            "the relative is named by their personnummer, samordningsnummer, fødselsnummer or "
            "D-nummer (identifier with its system), or as RelatedPerson/<id>"
        )
        problems.append(issue(said, "invalid", f"{where}.identifier"))
        return None, None, None
    display = str(reference.get("display", "")).split()
    name = Name(family=display[-1], given=tuple(display[:-1])) if display else None
    return relative, None, name


def _moment(value: object, at: time, where: str, problems: list[Issue]) -> datetime | None:
    if value is None:
        return None
    text = str(value)
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), at, CLINIC_TIME)
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        problems.append(issue("a day, or a moment with its time zone", "value", where))
        return None
    return moment


def _action_codes(actions: object, problems: list[Issue]) -> set[str]:
    codes = {
        str(coding.get("code"))
        for action in (actions if isinstance(actions, list) else [])
        for coding in _object(action).get("coding", [])
        if isinstance(coding, dict) and coding.get("system", _ACTIONS) == _ACTIONS
    }
    if codes - {"access", "correct"}:
        said = "a leave lets the relative access the plan, and correct (report on) their part"
        problems.append(issue(said, "not-supported", "Consent.provision.action"))
    return codes


def _object(value: object) -> Resource:
    return value if isinstance(value, dict) else {}
