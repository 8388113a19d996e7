"""``Appointment/$find``, ``$hold``, ``$book`` (IHE Scheduling ITI-115, ITI-116, ITI-117
shapes) and ``$release``, ``$find`` by GET with query parameters or by POST with a Parameters
body, as FHIR clients call operations (`fhir_service.records.scheduling` says what they do).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from fhir_service.api.deps import RecordsDep, SettingsDep
from fhir_service.api.fhir.answers import answer, base_url, bundle_answer, rebased
from fhir_service.api.fhir.bodies import fhir_body, parameter
from fhir_service.api.fhir.outcomes import FHIR_JSON, fhir_response
from fhir_service.api.fhir.types import route_name
from fhir_service.errors import InvalidRequestError, issue
from fhir_service.records import Find

__all__ = ["router"]

Resource = dict[str, Any]

router = APIRouter(prefix="/fhir", tags=["fhir"])

_FIND = "Appointment/$find"
_MOST_FOUND = 100


@router.get(
    f"/{_FIND}",
    name=route_name("find", "Appointment"),
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def find(
    request: Request,
    records: RecordsDep,
    start: Annotated[datetime, Query(description="The earliest start.")],
    end: Annotated[datetime, Query(description="The latest start (exclusive).")],
    organization: Annotated[str, Query(max_length=200, description="The unit: system|value.")],
    visit_type: Annotated[str, Query(alias="visit-type", max_length=200)],
    agreed_time: Annotated[
        str | None, Query(alias="agreed-time", max_length=200, description="<contract>/<key>")
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=_MOST_FOUND)] = 20,
) -> Response:
    """Free times of a care unit's time type as proposed Appointments (IHE ITI-115 shape)."""

    async def work() -> Response:
        asked = Find(organization, visit_type, start, end, agreed_time, count)
        bundle = await records.find(asked)
        return bundle_answer(request, records.hapi_base, bundle, _FIND)

    return await answer(request, work)


@router.post(
    f"/{_FIND}",
    name=route_name("find", "Appointment"),
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def find_posted(request: Request, records: RecordsDep) -> Response:
    """``$find`` by POST, as FHIR clients call an operation: its parameters in a Parameters
    body, with the names and meanings of the GET form."""

    async def work() -> Response:
        body = await fhir_body(request)
        given = {name: parameter(body, name) for name in _FIND_PARAMETERS}
        asked = _find_of(given)
        bundle = await records.find(asked)
        self_url = f"{base_url(request)}/{_FIND}?{urlencode({k: v for k, v in given.items() if v})}"
        return bundle_answer(request, records.hapi_base, bundle, _FIND, self_url)

    return await answer(request, work)


_FIND_PARAMETERS = ("start", "end", "organization", "visit-type", "agreed-time", "_count")
_REQUIRED = ("start", "end", "organization", "visit-type")


def _find_of(given: dict[str, str | None]) -> Find:
    """The search a Parameters body asks; every problem with it at once."""
    problems = [issue("is required", "required", name) for name in _REQUIRED if not given[name]]
    times: dict[str, datetime] = {}
    for name in ("start", "end"):
        value = given[name]
        if value:
            try:
                times[name] = datetime.fromisoformat(value)
            except ValueError:
                problems.append(issue(f"{value!r} is not a dateTime", "invalid", name))
    count = given["_count"] or "20"
    if not count.isdigit() or not 1 <= int(count) <= _MOST_FOUND:
        problems.append(issue(f"is between 1 and {_MOST_FOUND}", "invalid", "_count"))
    if problems:
        raise InvalidRequestError("the $find parameters are not complete", problems)
    return Find(
        str(given["organization"]),
        str(given["visit-type"]),
        times["start"],
        times["end"],
        given["agreed-time"],
        int(count),
    )


@router.post(
    "/Appointment/$book",
    name=route_name("book", "Appointment"),
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def book(request: Request, records: RecordsDep) -> Response:
    """Book a contract's agreed time in the Slot a proposed Appointment names (ITI-117 shape)."""

    async def work() -> Response:
        booked = await records.book(await fhir_body(request))
        return fhir_response(rebased(booked, records.hapi_base, base_url(request)))

    return await answer(request, work)


@router.post(
    "/Appointment/$hold",
    name=route_name("hold", "Appointment"),
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def hold(request: Request, records: RecordsDep, settings: SettingsDep) -> Response:
    """Hold a contract's agreed time in the Slot a proposed Appointment names, for the caller
    to book meanwhile (ITI-116 shape): the Appointment pending, the Slot busy-tentative."""

    async def work() -> Response:
        held = await records.hold(await fhir_body(request), settings.booking_hold_minutes)
        return fhir_response(rebased(held, records.hapi_base, base_url(request)))

    return await answer(request, work)


@router.post(
    "/Appointment/$release",
    name=route_name("release", "Appointment"),
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def release(request: Request, records: RecordsDep) -> Response:
    """Let go of a hold: the agreed time proposed again, its Slot free."""

    async def work() -> Response:
        released = await records.release(await fhir_body(request))
        return fhir_response(rebased(released, records.hapi_base, base_url(request)))

    return await answer(request, work)
