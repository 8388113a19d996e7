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

from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fhir_service.api.deps import BookingDep, SettingsDep
from fhir_service.api.languages import AcceptLanguage, language_headers, negotiated_language
from fhir_service.api.problems import PROBLEM_JSON
from fhir_service.booking import Defined, Opening, PublishedTime
from fhir_service.contract import (
    AgreedTime,
    GuaranteeVerdict,
    Identifier,
    OrganizationKind,
    TimeType,
    TimeTypeRules,
    known_zone,
)
from fhir_service.records import FreeSlotsAsked, Template

__all__ = ["router"]

router = APIRouter(prefix="/booking", tags=["booking"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}

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
    name: str | None = Field(
        default=None,
        description="What its unit calls the time's type, in Content-Language; none for a time "
        "of no type the unit defined.",
    )


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
    unit: UnitPath, code: CodePath, body: PublishRequest, booking: BookingDep
) -> Response:
    """Publish bookable times of one time type: listed, or from a weekly template.

    Publishing the same times again changes nothing (each time is named by its unit, type and
    start); times already booked stay booked.
    """
    template = body.template
    published = await booking.publish(
        unit,
        code,
        [PublishedTime(t.start, t.end) for t in body.times],
        None
        if template is None
        else Template(
            template.from_,
            template.to,
            tuple(Opening(o.weekday, o.start, o.end) for o in template.openings),
        ),
    )
    return JSONResponse(
        PublishAnswer(created=published.created, existing=published.existing).model_dump()
    )


class TimeTypeBody(TimeTypeRules):
    """A time type as the care unit defines it, with the unit's name and clock."""

    unit_name: str = Field(min_length=1, max_length=200, description="The care unit's name.")
    unit_kind: OrganizationKind = Field(
        default=OrganizationKind.CARE_UNIT,
        description="What kind of unit it is, when its record is made now (a unit contracts "
        "name already keeps the kind they gave it).",
    )
    time_zone: str = Field(
        default="Europe/Stockholm",
        max_length=64,
        description="The clock the unit's times are published and counted in (IANA name).",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        if not known_zone(zone):
            raise ValueError(f"unknown time zone {zone!r}: an IANA name, like Europe/Oslo")
        return zone


class UnitTimeType(_Body):
    """One of the unit's time types as stored, and the FHIR resource that holds it."""

    care_unit: Identifier
    unit_name: str
    time_zone: str
    time_type: TimeType
    resource: str = Field(description="The HealthcareService that holds it, on /fhir.")


class DefinedAnswer(UnitTimeType):
    """A time type as defined now."""

    created: bool
    applies_from: datetime = Field(
        description="The definition applies to times booked from this moment on; times booked "
        "before keep the online rules they were booked under."
    )
    before: TimeType | None = Field(description="The definition it replaced; none when new.")


class RetiredAnswer(DefinedAnswer):
    """A time type retired: no new times or bookings of it; booked times stay booked."""

    closed_free_slots: int = Field(description="Free times to come closed with it.")


class UnitTimeTypes(_Body):
    """A care unit's time types, retired ones too (``active: false``)."""

    care_unit: Identifier
    unit_name: str
    time_zone: str
    time_types: tuple[TimeType, ...]


_TYPE_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Another care unit's time types.", **_PROBLEM},
    422: {"description": "An invalid definition; every problem at once.", **_PROBLEM},
}


@router.get(
    "/care-units/{unit}/time-types",
    response_model=UnitTimeTypes,
    responses={404: {"description": "The unit has defined no time types.", **_PROBLEM}},
)
async def list_time_types(unit: UnitPath, booking: BookingDep) -> Response:
    """The care unit's time types as it defined them: names in sv, nb and en, and rules."""
    found = await booking.time_types(unit)
    body = UnitTimeTypes(
        care_unit=found.unit.identifier,
        unit_name=found.unit.name,
        time_zone=found.time_zone,
        time_types=found.time_types,
    )
    return JSONResponse(body.model_dump(mode="json"))


@router.put(
    "/care-units/{unit}/time-types/{code}",
    response_model=DefinedAnswer,
    status_code=200,
    responses={201: {"description": "Defined anew.", "model": DefinedAnswer}, **_TYPE_ERRORS},
)
async def define_time_type(
    unit: UnitPath, code: CodePath, body: TimeTypeBody, booking: BookingDep
) -> Response:
    """Define one of the unit's own time types, or change it (its EHR's token).

    A change applies to times booked from ``applies_from`` on; times already booked keep the
    rules they were booked under. Publishing times of a type needs it defined first.
    """
    rules = TimeTypeRules.model_validate(body.model_dump(include=set(TimeTypeRules.model_fields)))
    defined = await booking.define(
        unit, code, rules, body.unit_name, body.time_zone, body.unit_kind
    )
    answer = _defined(defined)
    return JSONResponse(answer.model_dump(mode="json"), status_code=201 if answer.created else 200)


@router.delete(
    "/care-units/{unit}/time-types/{code}",
    response_model=RetiredAnswer,
    responses={
        404: {"description": "The unit has no such time type.", **_PROBLEM},
        409: {
            "description": "free-slots=refuse, and the type has free times to come.",
            **_PROBLEM,
        },
        **_TYPE_ERRORS,
    },
)
async def retire_time_type(
    unit: UnitPath,
    code: CodePath,
    booking: BookingDep,
    free_slots: Annotated[
        Literal["close", "refuse"],
        Query(
            alias="free-slots",
            description="close: its free times to come are closed with it; refuse (the "
            "default): refused while it has any.",
        ),
    ] = "refuse",
) -> Response:
    """Retire one of the unit's own time types: no new times or bookings of it; times booked
    stay booked and keep their rules. It stays readable, ``active: false``."""
    retired = await booking.retire(unit, code, close_free=free_slots == "close")
    answer = _defined(retired.defined)
    body = RetiredAnswer(**answer.model_dump(), closed_free_slots=retired.closed)
    return JSONResponse(body.model_dump(mode="json"))


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
    judged = await booking.free_slots(
        FreeSlotsAsked(care_unit_, time_type_, from_, to, count, contract, agreed_time)
    )
    language = negotiated_language(None, accept_language)
    body = FreeSlots(
        slots=tuple(
            FreeSlot(
                id=j.slot.id,
                start=j.slot.start,
                end=j.slot.end,
                care_unit=j.slot.care_unit,
                time_type=j.slot.time_type.code,
                name=j.slot.time_type.name(language),
                care_guarantee=j.verdict,
            )
            for j in judged
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
) -> Response:
    """Book the contract's agreed time in a free slot: the slot is taken (never twice) and
    the agreed time is booked, in one transaction."""
    return _time(await booking.book(contract_id, key, body.slot))


@router.post(
    "/contracts/{contract_id}/times/{key}/hold",
    response_model=AgreedTime,
    responses=_CHANGE_ERRORS,
)
async def hold_time(
    contract_id: ContractIdPath,
    key: TimeKeyPath,
    body: BookRequest,
    booking: BookingDep,
    settings: SettingsDep,
) -> Response:
    """Hold the contract's agreed time in a free slot while the patient confirms: the slot is
    busy-tentative and the time pending, for the caller alone to book (``/book`` with the same
    slot) or let go (``/release``) until ``hold.until``; then it is anyone's."""
    return _time(await booking.hold(contract_id, key, body.slot, settings.booking_hold_minutes))


@router.post(
    "/contracts/{contract_id}/times/{key}/release",
    response_model=AgreedTime,
    responses=_CHANGE_ERRORS,
)
async def release_time(
    contract_id: ContractIdPath, key: TimeKeyPath, booking: BookingDep
) -> Response:
    """Let go of a hold: the agreed time is proposed again and its slot free. The holder lets
    theirs go; the care unit any on its contracts."""
    return _time(await booking.release(contract_id, key))


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
) -> Response:
    """Cancel a booked agreed time, with the reason; its slot is free again."""
    return _time(await booking.cancel(contract_id, key, body.reason))


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
) -> Response:
    """Move a booked agreed time to another free slot: the new slot is taken and the old one
    freed in one transaction."""
    return _time(await booking.rebook(contract_id, key, body.slot))


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
    accept_language: AcceptLanguage = None,
) -> Response:
    """The patient's booked times still to come, soonest first, across their contracts, as
    far as the caller may see them, each named as its unit calls its type."""
    times = await booking.booked_times(patient)
    language = negotiated_language(None, accept_language)
    body = BookedTimes(
        times=tuple(
            BookedTime(contract_id=c, time=t, name=None if k is None else k.name(language))
            for c, t, k in times
        )
    )
    return JSONResponse(body.model_dump(mode="json"), headers=language_headers(language))


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
    care_unit_: Annotated[
        str,
        Query(alias="careUnit", pattern=r"^[a-z\-]+\|.+$", description="The unit as kind|value."),
    ],
) -> Response:
    """The unit's contracts in force whose agreed times break the care guarantee: booked past
    its deadline, or not booked and the deadline passed; as far as the caller may see them."""
    found = await booking.breaches(care_unit_)
    body = GuaranteeBreaches(
        breaches=tuple(
            GuaranteeBreach(
                contract_id=b.contract_id,
                patient=contract.patient.identifier,
                time=b.time,
                verdict=b.verdict,
                booked=b.booked,
            )
            for contract, b in found
        )
    )
    return JSONResponse(body.model_dump(mode="json"))


def _time(changed: AgreedTime) -> Response:
    return JSONResponse(changed.model_dump(mode="json"))


def _defined(defined: Defined) -> DefinedAnswer:
    return DefinedAnswer(
        care_unit=defined.unit.identifier,
        unit_name=defined.unit.name,
        time_zone=defined.time_zone,
        time_type=defined.kind,
        resource=f"HealthcareService/{defined.resource['id']}",
        created=defined.before is None,
        applies_from=defined.applies_from,
        before=defined.before,
    )
