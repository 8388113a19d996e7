"""The booking facade as one request's caller may use it: `CallerBooking`.

Bound once per request (`fhir_service.api.deps.BookingDep`) to the caller's `Access`, the audit
record and the booking service. Callers without a care unit (booking platforms, patients) are
the patient's side: they see only the time types the clinic lets patients book, and are held
to the clinic's rules online. A care unit's staff publish their own unit's times and change
its contracts' times without those limits; a patient books only their own contracts'. What a
caller may not see is answered as absent, and the audit record says what really happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fhir_service.audit.witness import Witness
from fhir_service.booking import BookableSlot, Booked, BookingService, Published
from fhir_service.booking.breaches import Breach, breaches, verdict_for
from fhir_service.booking.callers import offered, patient_side, shown_time, unit_of, unseen
from fhir_service.booking.catalogue import Defined
from fhir_service.booking.resources import PublishedTime
from fhir_service.booking.shown import AgreedTimeNotFoundError, NotShownError
from fhir_service.booking.template import Opening, weekly_times
from fhir_service.contract import (
    AgreedTime,
    AgreedTimeStatus,
    CareUnitTimes,
    Contract,
    GuaranteeVerdict,
    Identifier,
    Organization,
    OrganizationKind,
    TimeType,
    TimeTypeRules,
    own_language,
)
from fhir_service.errors import (
    ForbiddenError,
    InvalidRequestError,
    RecordConflictError,
    RecordNotFoundError,
    UnprocessableError,
)
from fhir_service.mapping.time_types import DefinedTimeType, step_problems
from fhir_service.security.access import Access, Denial, identifier_named
from fhir_service.store import Change, ContractNotFoundError

__all__ = ["CallerBooking", "FreeSlotsAsked", "JudgedSlot", "Retired", "Template"]

# The contracts whose times are booked, listed and judged: drafts too, for their care unit.
_LIVE_STATUSES = ("draft", "agreed", "revised")
_MOST_DAYS = 92


@dataclass(frozen=True, slots=True)
class Template:
    """Times cut from weekly opening hours, every day from ``first`` to ``last`` inclusive."""

    first: date
    last: date
    openings: tuple[Opening, ...]


@dataclass(frozen=True, slots=True)
class FreeSlotsAsked:
    """Free times of a care unit's time type; with a contract's agreed time, judged against
    its care guarantee."""

    care_unit: str
    time_type: str
    start: datetime | None = None
    end: datetime | None = None
    count: int = 20
    contract: str | None = None
    agreed_time: str | None = None


@dataclass(frozen=True, slots=True)
class Retired:
    """A time type retired, and how many of its free times to come were closed with it."""

    defined: Defined
    closed: int


@dataclass(frozen=True, slots=True)
class JudgedSlot:
    """A free slot, and how booking it would stand against the care guarantee (when asked)."""

    slot: BookableSlot
    verdict: GuaranteeVerdict | None


class CallerBooking:
    """One request's caller's booking."""

    def __init__(
        self,
        access: Access,
        witness: Witness,
        change: Callable[[], Change],
        booking: BookingService,
    ) -> None:
        self.access = access
        self.witness = witness
        self._change = change
        self.booking = booking

    async def publish(
        self, unit: str, code: str, times: Sequence[PublishedTime], template: Template | None
    ) -> Published:
        """Publish bookable times of the unit's own time type ``code``: ``times``, or those
        ``template`` makes."""
        identifier = self._own_unit(unit, "publishes its own times")
        types = await self.booking.catalogue.current(knowing=[(identifier, code)])
        clinic = types.care_unit(identifier)
        kind = None if clinic is None else clinic.time_type(code)
        if clinic is None or kind is None:
            raise RecordNotFoundError(
                f"{unit} has no time type {code!r} in force: define it first",
                title="Unknown time type",
            )
        if template is not None:
            if template.last < template.first or (template.last - template.first).days > _MOST_DAYS:
                raise UnprocessableError(
                    f"the period must run forwards, at most {_MOST_DAYS} days",
                    title="Invalid template",
                )
            try:
                made = weekly_times(
                    template.openings,
                    template.first,
                    template.last,
                    kind.duration,
                    clinic.zone,
                )
            except ValueError as exc:
                # The template's own refusal (too many times) or a wall-clock time the zone
                # skips: either way, what the caller sent does not make times.
                raise UnprocessableError(str(exc), title="Invalid template") from exc
            times = made
        return await self.booking.publish(clinic.unit, kind, list(times))

    async def time_types(self, unit: str) -> CareUnitTimes:
        """The unit's time types, retired ones too (anyone may read what a unit offers)."""
        identifier = _unit(unit)
        found = (await self.booking.catalogue.current()).care_unit(identifier)
        if found is None:
            raise RecordNotFoundError(f"{unit} has defined no time types", title="Unknown unit")
        return found

    async def define(
        self,
        unit: str,
        code: str,
        rules: TimeTypeRules,
        unit_name: str,
        time_zone: str,
        unit_kind: OrganizationKind,
    ) -> Defined:
        """Define the unit's own time type ``code``, or change it: the change applies to times
        booked from now on; times booked before keep the rules they were booked under."""
        identifier = self._own_unit(unit, "defines its own time types")
        organization = Organization(identifier=identifier, name=unit_name, kind=unit_kind)
        kind = TimeType(code=code, **rules.model_dump())
        problems = step_problems(organization, kind, "$.care_guarantee_step")
        if problems:
            raise UnprocessableError(problems[0]["diagnostics"], problems, title="Unknown code")
        language = own_language(identifier)
        defined = DefinedTimeType(organization, time_zone, kind)
        return await self.booking.catalogue.define(defined, language, self._change())

    async def retire(self, unit: str, code: str, *, close_free: bool) -> Retired:
        """Retire the unit's own time type: no new times or bookings of it. Its free times to
        come are closed with it (``close_free``), or it is refused while it has any."""
        identifier = self._own_unit(unit, "retires its own time types")
        types = await self.booking.catalogue.current(knowing=[(identifier, code)])
        clinic = types.care_unit(identifier)
        kind = None if clinic is None else types.known(identifier).get(code)
        if clinic is None or kind is None:
            raise RecordNotFoundError(
                f"{unit} has no time type {code!r}", title="Unknown time type"
            )
        if not close_free:
            free = await self.booking.count_free(clinic.unit, kind)
            if free:
                raise RecordConflictError(
                    f"{code!r} has {free} free times to come: close them with it "
                    "(free-slots=close), or wait until they are booked or past",
                    title="Free times left",
                )
        retired = kind.model_copy(update={"active": False})
        defined = await self.booking.catalogue.define(
            DefinedTimeType(clinic.unit, clinic.time_zone, retired), clinic.language, self._change()
        )
        closed = await self.booking.close_free(clinic.unit, kind) if close_free else 0
        return Retired(defined, closed)

    def _own_unit(self, unit: str, what: str) -> Identifier:
        """The care unit ``unit`` names, once it is the caller's own."""
        identifier = _unit(unit)
        walls = self.access.compartment
        if walls.patient is not None or (
            walls.organization is not None and walls.organization != identifier
        ):
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise ForbiddenError(f"a care unit {what} only")
        return identifier

    async def free_slots(self, asked: FreeSlotsAsked) -> list[JudgedSlot]:
        """Free times of a care unit's time type in a period (default: the coming four weeks)."""
        named = unit_of(asked.care_unit)
        knowing = [] if named is None else [(named, asked.time_type)]
        types = await self.booking.catalogue.current(knowing=knowing)
        found = offered(types, asked.care_unit, asked.time_type)
        if found is None:
            raise RecordNotFoundError(
                f"{asked.care_unit} has no time type {asked.time_type!r}",
                title="Unknown time type",
            )
        clinic, kind = found
        if patient_side(self.access) and not kind.patient.book:
            raise RecordNotFoundError(
                f"{asked.time_type!r} times are not booked online", title="Unknown time type"
            )
        start = asked.start or datetime.now(UTC)
        end = asked.end or start + timedelta(weeks=4)
        if end <= start:
            raise InvalidRequestError("to is not after from", title="Invalid period")
        if (asked.contract is None) != (asked.agreed_time is None):
            raise InvalidRequestError(
                "give contract and agreedTime together", title="Invalid criteria"
            )
        judged = None
        if asked.contract is not None and asked.agreed_time is not None:
            judged = await shown_time(
                self.booking, self.access, self.witness, asked.contract, asked.agreed_time
            )
            if judged is None:
                raise RecordNotFoundError("no such contract or agreed time")
        slots = await self.booking.free_slots(clinic.unit, kind, start, end, count=asked.count)
        return [
            JudgedSlot(s, None if judged is None else verdict_for(*judged, s.start, types))
            for s in slots
        ]

    async def book(self, contract_id: str, key: str, slot: str) -> AgreedTime:
        """Book the contract's agreed time in a free slot: the slot is taken (never twice) and
        the agreed time booked, in one transaction."""
        return await self._changed(
            lambda by, patient: self.booking.book(contract_id, key, slot, by, patient=patient)
        )

    async def hold(self, contract_id: str, key: str, slot: str, minutes: float) -> AgreedTime:
        """Hold the contract's agreed time in a free slot for the caller, for ``minutes``: the
        slot busy-tentative, the time pending, theirs alone to book meanwhile."""
        until = datetime.now(UTC) + timedelta(minutes=minutes)
        return await self._changed(
            lambda by, patient: self.booking.hold(
                contract_id, key, slot, by, patient=patient, until=until
            )
        )

    async def release(self, contract_id: str, key: str) -> AgreedTime:
        """Let go of the hold on the contract's agreed time: proposed again, its slot free."""
        return await self._changed(
            lambda by, patient: self.booking.release(contract_id, key, by, patient=patient)
        )

    async def cancel(self, contract_id: str, key: str, reason: str) -> AgreedTime:
        """Cancel a booked agreed time, with the reason; its slot is free again."""
        return await self._changed(
            lambda by, patient: self.booking.cancel(contract_id, key, reason, by, patient=patient)
        )

    async def rebook(self, contract_id: str, key: str, slot: str) -> AgreedTime:
        """Move a booked agreed time to another free slot, the old one freed, at once."""
        return await self._changed(
            lambda by, patient: self.booking.rebook(contract_id, key, slot, by, patient=patient)
        )

    async def booked_times(self, patient: str) -> list[tuple[str, AgreedTime, TimeType | None]]:
        """The patient's booked times still to come, soonest first, as ``(contract id, time,
        its type as its unit defined it)``, as far as the caller may see them."""
        identifier = identifier_named(patient, patient=True)
        if identifier is None:
            raise UnprocessableError("expected a patient's identifier", title="Invalid patient")
        walls = self.access.compartment
        if walls.patient is not None and walls.patient != identifier:
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise ForbiddenError("a patient reads their own times only")
        contracts = await self.booking.shown_to(walls).of_patient(identifier, _LIVE_STATUSES)
        types = await self.booking.catalogue.current()
        now = datetime.now(UTC)
        times = []
        for contract in contracts:
            self.witness.saw_contract(contract)
            times += [
                (contract.id, t, types.known(t.organization.identifier).get(t.time_type or ""))
                for t in contract.agreed_times
                if t.status is AgreedTimeStatus.BOOKED and t.start is not None and t.start >= now
            ]
        return sorted(times, key=lambda booked: booked[1].start or now)

    async def breaches(self, unit: str) -> list[tuple[Contract, Breach]]:
        """The unit's contracts' agreed times that break the care guarantee: booked past its
        deadline, or not booked and the deadline passed; as far as the caller may see them."""
        identifier = _unit(unit)
        walls = self.access.compartment
        if walls.organization is not None and walls.organization != identifier:
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise ForbiddenError("a care unit reads its own contracts only")
        now = datetime.now(UTC)
        types = await self.booking.catalogue.current()
        found: list[tuple[Contract, Breach]] = []
        async for contract in self.booking.shown_to(walls).of_unit(identifier, _LIVE_STATUSES):
            late = breaches(contract, now, types)
            if late:
                self.witness.saw_contract(contract)
            found += [(contract, b) for b in late]
        return found

    async def _changed(self, change: Callable[[Change, bool], Awaitable[Booked]]) -> AgreedTime:
        try:
            booked = await change(self._change(), patient_side(self.access))
        except NotShownError as exc:
            unseen(self.witness, exc)
            raise RecordNotFoundError("no such contract") from exc
        except AgreedTimeNotFoundError as exc:
            unseen(self.witness, exc)
            raise
        except ContractNotFoundError as exc:
            raise RecordNotFoundError("no such contract") from exc
        self.witness.saw_contract(booked.contract)
        return booked.time


def _unit(text: str) -> Identifier:
    identifier = unit_of(text)
    if identifier is None:
        raise UnprocessableError("expected kind|value of a care unit", title="Invalid care unit")
    return identifier
