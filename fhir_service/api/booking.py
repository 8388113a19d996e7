"""The booking facade: clinics publish bookable times; booking platforms and patients find free
ones and book, cancel and rebook a contract's agreed times in them.

Callers without a care unit (booking platforms, patients) are the patient's side: they see only
the time types the clinic lets patients book, and are held to the clinic's rules for cancelling
and rebooking online. A care unit's staff publish their own unit's times and book, cancel and
rebook its contracts' times without those limits. A patient books only their own contracts'.

Every route reads contracts through the booking service's `fhir_service.booking.shown`: what a
caller may not see (another's contract; for a patient a draft, or content labelled restricted)
is answered as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from fhir_service.api.audit_trail import AuditTrail, change_by
from fhir_service.api.deps import AccessDep, AuditTrailDep, HapiClientDep, StoreDep
from fhir_service.api.languages import AcceptLanguage, language_headers, negotiated_language
from fhir_service.api.problems import PROBLEM_JSON, problem_response
from fhir_service.booking import (
    AgreedTimeNotFoundError,
    Booked,
    BookingRefusedError,
    BookingService,
    NotShownError,
    Opening,
    PublishedTime,
    SlotNotFoundError,
    SlotTakenError,
    TemplateTooLargeError,
    breaches,
    offered,
    patient_side,
    shown_time,
    unit_of,
    unseen,
    verdict_for,
    weekly_times,
)
from fhir_service.contract import (
    AgreedTime,
    AgreedTimeStatus,
    GuaranteeVerdict,
    Identifier,
)
from fhir_service.mapping import (
    UnknownTimeTypeError,
    care_unit,
    time_zone,
)
from fhir_service.security import Access, AccessDeniedError, Denial, claimed_identifier
from fhir_service.store import ContractNotFoundError

__all__ = ["router"]

router = APIRouter(prefix="/booking", tags=["booking"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
# The contracts whose times are booked, listed and judged: drafts too, for their care unit.
_LIVE_STATUSES = ("draft", "agreed", "revised")
_MOST_DAYS = 92

ContractIdPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$", description="The contract's id.")
]
TimeKeyPath = Annotated[
    str,
    Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$", description="The agreed time's key."),
]
UnitPath = Annotated[
    str,
    Path(
        pattern=r"^[a-z\-]+\|.+$",
        description="The care unit as kind|value, e.g. hsa-id|SE2321000065-1254.",
    ),
]
CodePath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$", description="A time type's code.")
]


async def _service(hapi: HapiClientDep, store: StoreDep) -> BookingService:
    # A coroutine only so that FastAPI does not hop to its thread pool to build it.
    return BookingService(hapi, store)


BookingDep = Annotated[BookingService, Depends(_service)]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SlotTime(_Body):
    """One time to publish."""

    start: AwareDatetime
    end: AwareDatetime


class WeeklyOpening(_Body):
    """Opening hours on one weekday, in the care unit's own clock."""

    weekday: int = Field(ge=1, le=7, description="1 = Monday ... 7 = Sunday.")
    start: time
    end: time


class WeeklyTemplate(_Body):
    """Times cut from weekly opening hours, every day from ``from`` to ``to`` inclusive."""

    from_: date = Field(alias="from")
    to: date
    openings: tuple[WeeklyOpening, ...] = Field(min_length=1)


class PublishRequest(_Body):
    """Times to publish: listed one by one, or made from a weekly template (one of the two)."""

    times: tuple[SlotTime, ...] = Field(default=(), max_length=2000)
    template: WeeklyTemplate | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PublishRequest:
        if bool(self.times) == (self.template is not None):
            raise ValueError("give either times or a template")
        return self


class PublishAnswer(_Body):
    """How many times are new, and how many were published before (left as they are)."""

    created: int
    existing: int


class FreeSlot(_Body):
    """A free time to book; ``id`` is what book and rebook take."""

    id: str
    start: datetime
    end: datetime
    care_unit: Identifier
    time_type: str
    name: str = Field(description="What the clinic calls the time type, in Content-Language.")
    care_guarantee: GuaranteeVerdict | None = Field(
        default=None,
        description="With contract and agreedTime asked: how a booking of this slot would stand "
        "against the contract's care guarantee (late: past its deadline).",
    )


class FreeSlots(_Body):
    """Free times, soonest first."""

    slots: tuple[FreeSlot, ...]


class BookRequest(_Body):
    """The free slot to book the agreed time in."""

    slot: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")


class CancelRequest(_Body):
    """Why the time is cancelled."""

    reason: str = Field(min_length=1, max_length=500)


class BookedTime(_Body):
    """One booked agreed time, and the contract it belongs to."""

    contract_id: str
    time: AgreedTime


class BookedTimes(_Body):
    """A patient's booked times still to come, across their contracts."""

    times: tuple[BookedTime, ...]


_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The clinic does not let patients do this online.", **_PROBLEM},
    404: {"description": "No such contract, agreed time or slot for this caller.", **_PROBLEM},
    409: {
        "description": "The slot was taken or the time changed meanwhile, the time is in a "
        "state that does not allow it, or the online cut-off has passed.",
        **_PROBLEM,
    },
    422: {"description": "The slot does not fit the agreed time.", **_PROBLEM},
    503: {"description": "HAPI FHIR is unavailable; retry after Retry-After.", **_PROBLEM},
}


@router.post(
    "/care-units/{unit}/time-types/{code}/slots",
    response_model=PublishAnswer,
    responses={
        403: {"description": "Another care unit's times.", **_PROBLEM},
        404: {"description": "The unit has no such time type.", **_PROBLEM},
        422: {"description": "Invalid times or template.", **_PROBLEM},
    },
)
async def publish_slots(
    unit: UnitPath,
    code: CodePath,
    body: PublishRequest,
    booking: BookingDep,
    access: AccessDep,
) -> Response:
    """Publish bookable times of one time type: listed, or from a weekly template.

    Publishing the same times again changes nothing (each time is named by its unit, type and
    start); times already booked stay booked.
    """
    identifier = unit_of(unit)
    if identifier is None:
        return problem_response(422, "Invalid care unit", "expected kind|value of a care unit")
    walls = access.compartment
    if walls.patient is not None or (
        walls.organization is not None and walls.organization != identifier
    ):
        return problem_response(403, "Forbidden", "a care unit publishes its own times only")
    clinic = care_unit(identifier)
    kind = None if clinic is None else clinic.time_type(code)
    if clinic is None or kind is None:
        return problem_response(404, "Unknown time type", f"{unit} has no time type {code!r}")
    if body.template is not None:
        template = body.template
        if template.to < template.from_ or (template.to - template.from_).days > _MOST_DAYS:
            return problem_response(
                422, "Invalid template", f"the period must run forwards, at most {_MOST_DAYS} days"
            )
        try:
            times = weekly_times(
                (Opening(o.weekday, o.start, o.end) for o in template.openings),
                template.from_,
                template.to,
                kind.duration,
                time_zone(identifier),
            )
        except (TemplateTooLargeError, ValueError) as exc:
            return problem_response(422, "Invalid template", str(exc))
    else:
        times = [PublishedTime(t.start, t.end) for t in body.times]
    try:
        published = await booking.publish(clinic.organization, code, times)
    except BookingRefusedError as exc:
        return problem_response(exc.status, "Invalid times", str(exc))
    return JSONResponse(
        PublishAnswer(created=published.created, existing=published.existing).model_dump()
    )


@router.get(
    "/slots",
    response_model=FreeSlots,
    responses={
        404: {"description": "The unit has no such time type.", **_PROBLEM},
        422: {"description": "An invalid criterion.", **_PROBLEM},
    },
)
async def find_slots(
    booking: BookingDep,
    access: AccessDep,
    trail: AuditTrailDep,
    care_unit_: Annotated[
        str,
        Query(
            alias="careUnit",
            pattern=r"^[a-z\-]+\|.+$",
            description="The care unit as kind|value.",
        ),
    ],
    time_type_: Annotated[str, Query(alias="timeType", max_length=64)],
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: Annotated[AwareDatetime | None, Query()] = None,
    count: Annotated[int, Query(ge=1, le=100)] = 20,
    contract: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$",
            description="A contract whose agreed time the slots are for (with agreedTime): each "
            "slot then says how it stands against the contract's care guarantee.",
        ),
    ] = None,
    agreed_time: Annotated[
        str | None, Query(alias="agreedTime", pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$")
    ] = None,
    accept_language: AcceptLanguage = None,
) -> Response:
    """Free times of a care unit's time type in a period (default: the coming four weeks).

    Patients and booking platforms see only the time types the clinic lets patients book.
    """
    found = offered(care_unit_, time_type_)
    if found is None:
        return problem_response(
            404, "Unknown time type", f"{care_unit_} has no time type {time_type_!r}"
        )
    clinic, kind = found
    if patient_side(access) and not kind.patient.book:
        return problem_response(
            404, "Unknown time type", f"{time_type_!r} times are not booked online"
        )
    start = from_ or datetime.now(UTC)
    end = to or start + timedelta(weeks=4)
    if end <= start:
        return problem_response(422, "Invalid period", "to is not after from")
    language = negotiated_language(None, accept_language)
    judged = None
    if (contract is None) != (agreed_time is None):
        return problem_response(422, "Invalid criteria", "give contract and agreedTime together")
    if contract is not None and agreed_time is not None:
        judged = await shown_time(booking, access, trail, contract, agreed_time)
        if judged is None:
            return problem_response(404, "Not Found", "no such contract or agreed time")
    slots = await booking.free_slots(clinic.organization, time_type_, start, end, count=count)
    body = FreeSlots(
        slots=tuple(
            FreeSlot(
                id=s.id,
                start=s.start,
                end=s.end,
                care_unit=s.care_unit,
                time_type=s.time_type.code,
                name=s.time_type.name(language),
                care_guarantee=None if judged is None else verdict_for(*judged, s.start),
            )
            for s in slots
        )
    )
    return JSONResponse(body.model_dump(mode="json"), headers=language_headers(language))


@router.post(
    "/contracts/{contract_id}/times/{key}/book",
    response_model=AgreedTime,
    responses=_CHANGE_ERRORS,
)
async def book_time(
    contract_id: ContractIdPath,
    key: TimeKeyPath,
    body: BookRequest,
    booking: BookingDep,
    access: AccessDep,
    trail: AuditTrailDep,
) -> Response:
    """Book the contract's agreed time in a free slot: the slot is taken (never twice) and
    the agreed time is booked, in one transaction."""
    return await _changing(
        trail,
        lambda: booking.book(
            contract_id, key, body.slot, change_by(access, trail), patient=patient_side(access)
        ),
    )


@router.post(
    "/contracts/{contract_id}/times/{key}/cancel",
    response_model=AgreedTime,
    responses=_CHANGE_ERRORS,
)
async def cancel_time(
    contract_id: ContractIdPath,
    key: TimeKeyPath,
    body: CancelRequest,
    booking: BookingDep,
    access: AccessDep,
    trail: AuditTrailDep,
) -> Response:
    """Cancel a booked agreed time, with the reason; its slot is free again."""
    return await _changing(
        trail,
        lambda: booking.cancel(
            contract_id,
            key,
            body.reason,
            change_by(access, trail),
            patient=patient_side(access),
        ),
    )


@router.post(
    "/contracts/{contract_id}/times/{key}/rebook",
    response_model=AgreedTime,
    responses=_CHANGE_ERRORS,
)
async def rebook_time(
    contract_id: ContractIdPath,
    key: TimeKeyPath,
    body: BookRequest,
    booking: BookingDep,
    access: AccessDep,
    trail: AuditTrailDep,
) -> Response:
    """Move a booked agreed time to another free slot: the new slot is taken and the old one
    freed in one transaction."""
    return await _changing(
        trail,
        lambda: booking.rebook(
            contract_id, key, body.slot, change_by(access, trail), patient=patient_side(access)
        ),
    )


@router.get(
    "/patients/{patient}/times",
    response_model=BookedTimes,
    responses={
        403: {"description": "A patient's token names another patient.", **_PROBLEM},
        422: {"description": "Not a patient's identifier.", **_PROBLEM},
    },
)
async def booked_times(
    patient: Annotated[
        str, Path(pattern=r"^[a-z\-]+\|.+$", description="The patient as kind|value.")
    ],
    booking: BookingDep,
    access: AccessDep,
    trail: AuditTrailDep,
) -> Response:
    """The patient's booked times still to come, soonest first, across their contracts, as
    far as the caller may see them."""
    try:
        identifier = claimed_identifier(patient, patient=True)
    except AccessDeniedError:
        identifier = None
    if identifier is None:
        return problem_response(422, "Invalid patient", "expected a patient's identifier")
    walls = access.compartment
    if walls.patient is not None and walls.patient != identifier:
        trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
        return problem_response(403, "Forbidden", "a patient reads their own times only")
    return await _times_of(booking, access, trail, identifier)


class GuaranteeBreach(_Body):
    """An agreed time that breaks its contract's care guarantee."""

    contract_id: str
    patient: Identifier
    time: AgreedTime
    verdict: GuaranteeVerdict
    booked: bool = Field(description="Booked past the deadline; else still not booked after it.")


class GuaranteeBreaches(_Body):
    """A care unit's contracts' agreed times that break the care guarantee."""

    breaches: tuple[GuaranteeBreach, ...]


@router.get(
    "/care-guarantee/breaches",
    response_model=GuaranteeBreaches,
    responses={
        403: {"description": "Another care unit's contracts.", **_PROBLEM},
        422: {"description": "Not a care unit's identifier.", **_PROBLEM},
    },
)
async def guarantee_breaches(
    booking: BookingDep,
    access: AccessDep,
    trail: AuditTrailDep,
    care_unit_: Annotated[
        str,
        Query(alias="careUnit", pattern=r"^[a-z\-]+\|.+$", description="The unit as kind|value."),
    ],
) -> Response:
    """The unit's contracts in force whose agreed times break the care guarantee: booked past
    its deadline, or not booked and the deadline passed; as far as the caller may see them."""
    identifier = unit_of(care_unit_)
    if identifier is None:
        return problem_response(422, "Invalid care unit", "expected kind|value of a care unit")
    walls = access.compartment
    if walls.organization is not None and walls.organization != identifier:
        trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
        return problem_response(403, "Forbidden", "a care unit reads its own contracts only")
    now = datetime.now(UTC)
    found: list[GuaranteeBreach] = []
    async for contract in booking.shown_to(walls).of_unit(identifier, _LIVE_STATUSES):
        late = breaches(contract, now)
        if late:
            trail.saw_contract(contract)
        found += [
            GuaranteeBreach(
                contract_id=b.contract_id,
                patient=contract.patient.identifier,
                time=b.time,
                verdict=b.verdict,
                booked=b.booked,
            )
            for b in late
        ]
    body = GuaranteeBreaches(breaches=tuple(found))
    return JSONResponse(body.model_dump(mode="json"))


async def _times_of(
    booking: BookingService, access: Access, trail: AuditTrail, patient: Identifier
) -> Response:
    contracts = await booking.shown_to(access.compartment).of_patient(patient, _LIVE_STATUSES)
    now = datetime.now(UTC)
    times = []
    for contract in contracts:
        trail.saw_contract(contract)
        times += [
            BookedTime(contract_id=contract.id, time=t)
            for t in contract.agreed_times
            if t.status is AgreedTimeStatus.BOOKED and t.start is not None and t.start >= now
        ]
    times.sort(key=lambda b: b.time.start or now)
    return JSONResponse(BookedTimes(times=tuple(times)).model_dump(mode="json"))


async def _changing(trail: AuditTrail, change: Callable[[], Awaitable[Booked]]) -> Response:
    try:
        booked = await change()
    except NotShownError as exc:
        unseen(trail, exc)
        return problem_response(404, "Not Found", "no such contract")
    except ContractNotFoundError:
        return problem_response(404, "Not Found", "no such contract")
    except AgreedTimeNotFoundError as exc:
        unseen(trail, exc)
        return problem_response(404, "Not Found", str(exc))
    except SlotNotFoundError as exc:
        return problem_response(404, "Not Found", str(exc))
    except SlotTakenError as exc:
        return problem_response(409, "Slot taken", str(exc))
    except BookingRefusedError as exc:
        titles = {403: "Not allowed online", 409: "Conflict", 422: "Does not fit"}
        return problem_response(exc.status, titles.get(exc.status, "Refused"), str(exc))
    except UnknownTimeTypeError as exc:
        return problem_response(422, "Does not fit", str(exc))
    trail.saw_contract(booked.contract)
    return JSONResponse(booked.time.model_dump(mode="json"))
