"""Booking a contract's agreed times from published Slots: book, cancel, rebook, never twice.

An agreed time of a contract (a proposed time, say "a follow-up with the nurse in two weeks")
is booked from a free Slot of its care unit and time type. One FHIR transaction writes the
Appointment (booked, with the Slot's start and end) and the Slot (busy), each only if it is
still at the version read, so of any number of concurrent bookings of one Slot exactly one
succeeds and the others get :class:`SlotTakenError`, with nothing written for them. Cancelling
frees the Slot in the same way; rebooking takes the new Slot and frees the old one in one
transaction. Each change carries its Provenance. The CarePlan is not written: the booking
realizes what was agreed, it does not change it.

A time booked against the contract's care guarantee carries its verdict (deadline, late or
not): a late booking is not refused, since it may be the best time there is, but it is
recorded on the Appointment and listed among the guarantee's breaches.

Patients acting for themselves are held to the clinic's rules (its time types, as the unit
defined them: `fhir_service.booking.catalogue`): which time types they may book, cancel or rebook
online, and until how long before the time. A time keeps the rules it was booked under.

Contracts are read through `fhir_service.booking.shown`: a contract or time the caller may not
see is not found, exactly as one that does not exist, so it is never booked, cancelled or
rebooked.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_service.booking.breaches import verdict_for
from fhir_service.booking.catalogue import TimeTypeCatalogue
from fhir_service.booking.errors import (
    DoesNotFitError,
    NotBookableNowError,
    NotOnlineError,
    SlotTakenError,
)
from fhir_service.booking.online import online_changes, rules_of
from fhir_service.booking.shown import Shown, ShownContracts
from fhir_service.booking.slots import SlotRecord, Slots, slot_entry
from fhir_service.contract import (
    AgreedTime,
    AgreedTimeStatus,
    Contract,
    ContractStatus,
    Hold,
    TimeType,
    TimeTypes,
)
from fhir_service.errors import ServiceError
from fhir_service.fhir import ConflictError, HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.elements import appointment_hold_of, key_of
from fhir_service.mapping.provenance import Author, change_entry
from fhir_service.mapping.stored import resolved
from fhir_service.mapping.to_fhir import agreed_time_bundle
from fhir_service.security.access import Compartment
from fhir_service.store import (
    Change,
    ContractNotFoundError,
    ContractStore,
    StaleVersionError,
    StoredContract,
)

__all__ = ["HOLD_EXPIRY", "Booked", "BookingService", "holder_of", "release_lapsed_forever"]

Resource = dict[str, Any]

_log = logging.getLogger(__name__)

_IN_FORCE = frozenset({ContractStatus.DRAFT, ContractStatus.AGREED, ContractStatus.REVISED})
HOLD_EXPIRY = Author(user=("fhir-service", "hold-expiry"))
"""Who releases a hold that lapsed: the service itself, as each change's Provenance says."""
_BOOKABLE = frozenset({AgreedTimeStatus.PROPOSED, AgreedTimeStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Booked:
    """An agreed time as it is now, and its contract with it."""

    contract: Contract
    time: AgreedTime


class BookingService(Slots):
    """Publishes, finds and books bookable times in HAPI."""

    def __init__(
        self, hapi: HapiClient, store: ContractStore, catalogue: TimeTypeCatalogue
    ) -> None:
        super().__init__(hapi)
        self.store = store
        self.catalogue = catalogue

    def shown_to(self, walls: Compartment) -> ShownContracts:
        """The contracts as a caller within ``walls`` is shown them: how routes read contracts."""
        return ShownContracts(self.store, walls)

    async def book(
        self, contract_id: str, key: str, slot_id: str, by: Change, *, patient: bool
    ) -> Booked:
        """Book the agreed time ``key`` of the contract from the free Slot ``slot_id``, or
        from the Slot it holds, when the caller is its holder."""
        found = await self.shown_to(by.compartment).read(contract_id)
        time = _time(found, key)
        own_hold = (
            time.status is AgreedTimeStatus.PENDING
            and time.hold is not None
            and time.hold.holder == holder_of(by)
            and time.slot == slot_id
        )
        if time.status not in _BOOKABLE and not own_hold:
            raise NotBookableNowError(
                f"agreed time {key!r} is {time.status}: rebook or cancel it instead"
            )
        slot = await self._claimable(slot_id, tentative_ok=own_hold)
        types = await self.catalogue.current()
        kind = _takeable(time, slot, types, patient=patient, held=own_hold)
        booked = _in_slot(time, slot, kind, AgreedTimeStatus.BOOKED)
        judged = _judged(found.stored.contract, booked, types)
        return await self._write(found.stored, judged, "book", by, take=slot)

    async def hold(
        self,
        contract_id: str,
        key: str,
        slot_id: str,
        by: Change,
        *,
        patient: bool,
        until: datetime,
    ) -> Booked:
        """Hold the agreed time ``key`` in the free Slot ``slot_id`` until ``until``: the Slot
        busy-tentative and the time pending, for the caller alone to book meanwhile (IHE
        ITI-116). Of concurrent holds and bookings of a Slot one succeeds."""
        found = await self.shown_to(by.compartment).read(contract_id)
        time = _time(found, key)
        if time.status not in _BOOKABLE:
            raise NotBookableNowError(f"agreed time {key!r} is {time.status}: it cannot be held")
        slot = await self._claimable(slot_id, tentative_ok=False)
        kind = _takeable(time, slot, await self.catalogue.current(), patient=patient)
        hold = Hold(until=until, holder=holder_of(by))
        held = _in_slot(time, slot, kind, AgreedTimeStatus.PENDING, hold)
        return await self._write(found.stored, held, "hold", by, take=slot, status="busy-tentative")

    async def release(self, contract_id: str, key: str, by: Change, *, patient: bool) -> Booked:
        """Release the hold on the agreed time ``key``: the time proposed again, its Slot free.
        A patient or platform releases only their own hold; the unit any of its own."""
        found = await self.shown_to(by.compartment).read(contract_id)
        time = _time(found, key)
        if time.status is not AgreedTimeStatus.PENDING or time.hold is None:
            raise NotBookableNowError(f"agreed time {key!r} is {time.status}, not held")
        staff = by.compartment.organization is not None
        if time.hold.holder != holder_of(by) and not (staff and not patient):
            raise SlotTakenError("the time is held by someone else")
        return await self._released(found.stored, time, by)

    async def release_lapsed(self, *, slot_id: str | None = None) -> int:
        """Release every hold that has lapsed (of Slot ``slot_id`` only, when given), as the
        service itself; how many it released. Safe from several instances at once: each
        release is made at the versions read, so one of them makes it and the others find it
        made."""
        moment = datetime.now(UTC)
        asked = [("status", "pending"), ("identifier", f"{urls.ID_AGREED_TIME}|")]
        if slot_id is not None:
            asked.append(("slot", f"Slot/{slot_id}"))
        found = await self.hapi.search("Appointment", [*asked, ("_count", "100")], max_pages=1)
        released = 0
        expiry = Change(HOLD_EXPIRY, Compartment())
        for appointment in found.matches():
            hold = appointment_hold_of(appointment)
            values = [
                str(i.get("value", ""))
                for i in appointment.get("identifier", [])
                if i.get("system") == urls.ID_AGREED_TIME
            ]
            if hold is None or hold.until > moment or not values:
                continue
            contract_id, _, key = values[0].partition("/")
            try:
                stored = (await self.shown_to(expiry.compartment).read(contract_id)).stored
                time = next((t for t in stored.contract.agreed_times if t.key == key), None)
                # Still held, by the hold found lapsed: not re-held or booked since.
                if time is not None and time.hold == hold:
                    await self._released(stored, time, expiry)
                    released += 1
            except (SlotTakenError, StaleVersionError, ContractNotFoundError):
                continue  # released, booked or changed meanwhile: nothing left to do here
        return released

    async def _released(self, stored: StoredContract, time: AgreedTime, by: Change) -> Booked:
        held = await self.slot(time.slot) if time.slot else None
        # Freed only if this hold still holds it.
        freed = (
            held if held is not None and held.resource.get("status") == "busy-tentative" else None
        )
        proposed = time.model_copy(
            update={
                "status": AgreedTimeStatus.PROPOSED,
                "start": None,
                "end": None,
                "slot": None,
                "care_guarantee": None,
                "hold": None,
                "online_rules": None,
            }
        )
        return await self._write(stored, proposed, "release", by, free=freed)

    async def _claimable(self, slot_id: str, *, tentative_ok: bool) -> SlotRecord:
        """The Slot ``slot_id`` as read, once what held it has lapsed: a Slot held past its
        hold is released first (at the versions read), then read again."""
        slot = await self.slot(slot_id)
        if slot.resource.get("status") != "busy-tentative" or tentative_ok:
            return slot
        if await self.release_lapsed(slot_id=slot_id) == 0:
            return slot
        return await self.slot(slot_id)

    async def cancel(
        self,
        contract_id: str,
        key: str,
        reason: str,
        by: Change,
        *,
        patient: bool,
        now: datetime | None = None,
    ) -> Booked:
        """Cancel the booked agreed time ``key`` for ``reason``; its Slot is free again."""
        found = await self.shown_to(by.compartment).read(contract_id)
        time = _time(found, key)
        if time.status is not AgreedTimeStatus.BOOKED:
            raise NotBookableNowError(f"agreed time {key!r} is {time.status}, not booked")
        if patient:
            _patient_may(time, "cancel", now or datetime.now(UTC), await self.catalogue.current())
        held = await self.slot(time.slot) if time.slot else None
        # Freed only if this time holds it: a Slot freed by other means stays as it is.
        freed = held if held is not None and held.resource.get("status") == "busy" else None
        cancelled = time.model_copy(
            update={"status": AgreedTimeStatus.CANCELLED, "cancellation_reason": reason}
        )
        return await self._write(found.stored, cancelled, "cancel", by, free=freed)

    async def rebook(
        self,
        contract_id: str,
        key: str,
        slot_id: str,
        by: Change,
        *,
        patient: bool,
        now: datetime | None = None,
    ) -> Booked:
        """Move the booked agreed time ``key`` to the free Slot ``slot_id``, freeing its old
        Slot, all in one transaction."""
        found = await self.shown_to(by.compartment).read(contract_id)
        time = _time(found, key)
        if time.status is not AgreedTimeStatus.BOOKED:
            raise NotBookableNowError(f"agreed time {key!r} is {time.status}: book it")
        types = await self.catalogue.current()
        if patient:
            _patient_may(time, "rebook", now or datetime.now(UTC), types)
        slot = await self.slot(slot_id)
        if slot.id == time.slot:
            raise NotBookableNowError("the time is booked in that slot already")
        kind = _slot_type(time, slot, types)
        _check_future(slot)
        freed = await self.slot(time.slot) if time.slot else None
        moved = _judged(
            found.stored.contract,
            time.model_copy(
                update={
                    "start": slot.start,
                    "end": slot.end,
                    "slot": slot.id,
                    "time_type": kind.code,
                    "online_rules": kind.online_rules,
                }
            ),
            types,
        )
        return await self._write(found.stored, moved, "rebook", by, take=slot, free=freed)

    async def _write(
        self,
        stored: StoredContract,
        time: AgreedTime,
        activity: str,
        by: Change,
        *,
        take: SlotRecord | None = None,
        free: SlotRecord | None = None,
        status: str = "busy",
    ) -> Booked:
        contract = stored.contract
        times = tuple(time if t.key == time.key else t for t in contract.agreed_times)
        changed = contract.model_copy(update={"agreed_times": times})
        appointment = _appointment(stored, contract.id, time.key)
        bundle = agreed_time_bundle(
            changed,
            time.key,
            server_id=str(appointment["id"]),
            version=str(appointment["meta"]["versionId"]),
        )
        if take is not None:
            bundle["entry"].append(slot_entry(take, status))
        if free is not None:
            bundle["entry"].append(slot_entry(free, "free"))
        provenance = change_entry(
            bundle,
            changed,
            by.author,
            activity=activity,
            created=False,
            recorded=datetime.now(UTC),
        )
        # The contract is named too, so "every change of contract X" finds bookings.
        provenance["resource"]["target"].append(
            {"identifier": {"system": urls.ID_CONTRACT, "value": contract.id}}
        )
        provenance["resource"]["target"] += [
            {"reference": f"Slot/{s.id}"} for s in (take, free) if s is not None
        ]
        bundle["entry"].append(provenance)
        # The contract was just read with the records its time names: name them by id, not
        # by a conditional create HAPI would search for.
        bundle = resolved(bundle, (e["resource"] for e in stored.bundle.get("entry", [])))
        try:
            answer = await self.hapi.transaction(bundle)
        except ConflictError as exc:
            raise SlotTakenError(
                "the slot or the agreed time changed meanwhile; nothing was written: "
                "find free slots again"
            ) from exc
        self.store.own_writes.wrote(changed, answer)
        return Booked(changed, time)


def _judged(contract: Contract, time: AgreedTime, types: TimeTypes) -> AgreedTime:
    """``time`` with its verdict against the contract's care guarantee, when one applies."""
    assert time.start is not None  # a booked time has its start
    verdict = verdict_for(contract, time, time.start, types)
    return time.model_copy(update={"care_guarantee": verdict})


def _time(found: Shown, key: str) -> AgreedTime:
    """The agreed time ``key`` as the caller sees it, of a contract still in force."""
    contract = found.contract
    if contract.status not in _IN_FORCE:
        raise NotBookableNowError(f"contract {contract.id!r} is {contract.status}")
    return found.time(key)


def _slot_type(
    time: AgreedTime, slot: SlotRecord, types: TimeTypes, *, held: bool = False
) -> TimeType:
    """The time type ``slot`` is of, once it is free (or, ``held``, held for ``time``), of a
    type its unit still offers, and fits ``time``."""
    if slot.resource.get("status") != ("busy-tentative" if held else "free"):
        raise SlotTakenError(f"slot {slot.id} is not free")
    unit = time.organization.identifier
    # Published Slots are named <unit>/<time type>/<start>: the unit is the one that published.
    published_by_unit = any(
        i.get("system") == urls.ID_SLOT and str(i.get("value", "")).startswith(f"{key_of(unit)}/")
        for i in slot.resource.get("identifier", [])
    )
    if not published_by_unit or slot.time_type is None:
        raise DoesNotFitError(
            f"slot {slot.id} is not one of {time.organization.name}'s bookable times"
        )
    if time.time_type is not None and slot.time_type != time.time_type:
        raise DoesNotFitError(
            f"agreed time {time.key!r} is a {time.time_type!r}, the slot a {slot.time_type!r}"
        )
    kind = types.offered(unit, slot.time_type)
    if kind is None:
        raise DoesNotFitError(
            f"{time.organization.name} no longer offers {slot.time_type!r} times: "
            "it retired the time type"
        )
    return kind


def _takeable(
    time: AgreedTime, slot: SlotRecord, types: TimeTypes, *, patient: bool, held: bool = False
) -> TimeType:
    """The time type ``slot`` is of, once ``time`` may be booked or held in it by this caller:
    the Slot free (or held for the time), of the time's type, to come, and, for a patient,
    of a type patients book online."""
    kind = _slot_type(time, slot, types, held=held)
    if patient and not kind.patient.book:
        raise NotOnlineError(f"{kind.name('en')} times are booked by the clinic, not online")
    _check_future(slot)
    return kind


def _in_slot(
    time: AgreedTime,
    slot: SlotRecord,
    kind: TimeType,
    status: AgreedTimeStatus,
    hold: Hold | None = None,
) -> AgreedTime:
    """``time`` booked or held (``status``, ``hold``) in ``slot`` of type ``kind``, under its
    online rules as they are now."""
    return time.model_copy(
        update={
            "status": status,
            "start": slot.start,
            "end": slot.end,
            "slot": slot.id,
            "time_type": kind.code,
            "cancellation_reason": None,
            "care_guarantee": None,
            "hold": hold,
            "online_rules": kind.online_rules,
        }
    )


def _check_future(slot: SlotRecord) -> None:
    if slot.start <= datetime.now(UTC):
        raise NotBookableNowError(f"slot {slot.id} has begun or passed")


def _patient_may(time: AgreedTime, action: str, now: datetime, types: TimeTypes) -> None:
    """A patient's own cancel or rebook: allowed by the rules the time was booked under, and
    before their cut-off."""
    rules = rules_of(time, types)
    allowed = online_changes(time, now, rules)
    if allowed is not None and (allowed.cancel if action == "cancel" else allowed.rebook):
        return
    if rules is None or not (rules.cancel if action == "cancel" else rules.rebook):
        raise NotOnlineError(f"this time cannot be {action}ed online")
    raise NotBookableNowError(
        f"this time can be {action}ed online until {rules.cancel_cutoff_hours} hours before; "
        "call the clinic",
    )


def _appointment(stored: StoredContract, contract_id: str, key: str) -> Resource:
    value = f"{contract_id}/{key}"
    for entry in stored.bundle["entry"]:
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Appointment" and any(
            i.get("system") == urls.ID_AGREED_TIME and i.get("value") == value
            for i in resource.get("identifier", [])
        ):
            return dict(resource)
    raise ValueError(f"contract {contract_id!r} was read without the Appointment of {key!r}")


def holder_of(by: Change) -> str:
    """Who holds a time held by ``by``: their token's issuer and subject."""
    issuer, subject = by.author.user
    return f"{issuer}|{subject}"


async def release_lapsed_forever(
    booking: BookingService, ready: asyncio.Event, every_seconds: float
) -> None:
    """Release the holds that lapsed, once HAPI is ready and then every ``every_seconds``,
    until cancelled: a Slot held past its hold is free for everyone, in HAPI too, whether the
    instance that made the hold still runs or not."""
    await ready.wait()
    while True:
        try:
            released = await booking.release_lapsed()
        except ServiceError as exc:
            _log.warning("releasing lapsed holds failed", extra={"reason": str(exc)})
        else:
            if released:
                _log.info("released lapsed holds", extra={"released": released})
        await asyncio.sleep(every_seconds)
