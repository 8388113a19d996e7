"""``Appointment/$find``, ``$hold``, ``$book`` and ``$release``: the booking facade for
platforms that speak FHIR, in the shapes of IHE Scheduling (ITI-115, ITI-116, ITI-117) and on
the same booking logic.

``$find`` answers free Slots as proposed Appointments that name their Slot; ``$hold`` takes the
one chosen, with the identifier of the contract's agreed time, and holds that time in the Slot
for the caller for a while (the Appointment pending, the Slot busy-tentative); ``$book`` books
it, from a free Slot or from the Slot the caller holds it in; ``$release`` lets a hold go. Each
answers the Appointment as stored. All read contracts as the booking facade does
(`fhir_service.booking.shown`): an agreed time the caller may not see is not found.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_service.booking.breaches import verdict_for
from fhir_service.booking.callers import offered, patient_side, shown_time, unseen
from fhir_service.booking.errors import SlotNotFoundError
from fhir_service.booking.service import Booked
from fhir_service.booking.shown import AgreedTimeNotFoundError, NotShownError
from fhir_service.errors import (
    InvalidRequestError,
    RecordNotFoundError,
    UnprocessableError,
    issue,
)
from fhir_service.mapping import urls
from fhir_service.mapping.elements import guarantee_verdict, instant
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.records.reads import CallerReads
from fhir_service.store import ContractNotFoundError

__all__ = ["Find", "book", "find", "hold", "release"]

Resource = dict[str, Any]

_LONGEST = timedelta(days=92)


class Find:
    """What ``$find`` asks: a unit's free times of one type in a period, perhaps for one of a
    contract's agreed times (``<contract>/<key>``), whose care guarantee judges each."""

    def __init__(
        self,
        organization: str,
        visit_type: str,
        start: datetime,
        end: datetime,
        agreed_time: str | None,
        count: int,
    ) -> None:
        self.organization = organization
        self.code = visit_type.removeprefix(f"{urls.CS_TIME_TYPE}|")
        self.start = start
        self.end = end
        self.agreed_time = agreed_time
        self.count = count


async def find(records: CallerReads, asked: Find) -> Resource:
    """Free times as proposed Appointments naming their Slot: a searchset without links."""
    booking = records.booking
    types = await booking.catalogue.current()
    found = offered(types, asked.organization, asked.code)
    if found is None or (patient_side(records.access) and not found[1].patient.book):
        raise RecordNotFoundError(f"{asked.organization} offers no {asked.code!r} times to book")
    clinic, kind = found
    start, end = asked.start, asked.end
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise InvalidRequestError(
            "start and end need time zones, and end after start",
            [issue("needs a time zone, and to be after start", "invalid", "end")],
        )
    if end - start > _LONGEST:
        raise InvalidRequestError(
            "search at most 92 days at a time",
            [issue("is more than 92 days after start", "too-costly", "end")],
        )
    judged = None
    if asked.agreed_time is not None:
        contract_id, _, key = asked.agreed_time.partition("/")
        judged = await shown_time(booking, records.access, records.witness, contract_id, key)
        if judged is None:
            raise RecordNotFoundError("no such contract or agreed time")
    slots = await booking.free_slots(clinic.unit, kind, start, end, count=asked.count)
    identifier = clinic.unit.identifier
    actor = {
        "identifier": {"system": system_for(identifier.kind), "value": identifier.value},
        "display": clinic.unit.name,
    }
    entries = []
    for slot in slots:
        appointment: Resource = {
            "resourceType": "Appointment",
            "status": "proposed",
            "start": instant(slot.start),
            "end": instant(slot.end),
            "minutesDuration": kind.minutes,
            "slot": [{"reference": f"{records.hapi_base}/Slot/{slot.id}"}],
            "serviceType": [
                {
                    "coding": [
                        {
                            "system": urls.CS_TIME_TYPE,
                            "code": asked.code,
                            "display": kind.name(clinic.language),
                        }
                    ]
                }
            ],
            "participant": [{"actor": actor, "status": "needs-action"}],
        }
        if judged is not None:
            verdict = verdict_for(*judged, slot.start, types)
            if verdict is not None:
                appointment["extension"] = [guarantee_verdict(verdict)]
        entries.append({"resource": appointment, "search": {"mode": "match"}})
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


async def book(records: CallerReads, body: Resource) -> Resource:
    """Book the agreed time the Appointment in ``body`` names in the Slot it names (free, or
    held by the caller); a collection Bundle holding the booked Appointment as stored."""
    booking = records.booking
    patient = patient_side(records.access)

    def booked(contract_id: str, key: str, slot: str | None) -> Awaitable[Booked]:
        return booking.book(contract_id, key, str(slot), records.change, patient=patient)

    return await _changed(records, body, booked)


async def hold(records: CallerReads, body: Resource, minutes: float) -> Resource:
    """Hold the agreed time the Appointment in ``body`` names in the free Slot it names, for
    the caller, for ``minutes``; a collection Bundle holding the pending Appointment."""
    booking = records.booking
    patient = patient_side(records.access)
    until = datetime.now(UTC) + timedelta(minutes=minutes)

    def held(contract_id: str, key: str, slot: str | None) -> Awaitable[Booked]:
        return booking.hold(
            contract_id, key, str(slot), records.change, patient=patient, until=until
        )

    return await _changed(records, body, held)


async def release(records: CallerReads, body: Resource) -> Resource:
    """Let go of the hold on the agreed time the Appointment in ``body`` names; a collection
    Bundle holding the Appointment, proposed again."""
    booking = records.booking
    patient = patient_side(records.access)

    def released(contract_id: str, key: str, slot: str | None) -> Awaitable[Booked]:
        return booking.release(contract_id, key, records.change, patient=patient)

    return await _changed(records, body, released, slot_needed=False)


async def _changed(
    records: CallerReads,
    body: Resource,
    change: Callable[[str, str, str | None], Awaitable[Booked]],
    *,
    slot_needed: bool = True,
) -> Resource:
    appointment = _appointment_of(body)
    if appointment is None:
        raise InvalidRequestError("send an Appointment, or Parameters with appointment")
    slot = _slot_of(appointment)
    agreed = _agreed_time_of(appointment)
    if (slot is None and slot_needed) or agreed is None:
        raise UnprocessableError(
            "the Appointment names one slot and one identifier of system "
            f"{urls.ID_AGREED_TIME} whose value is <contract id>/<key>"
        )
    contract_id, key = agreed
    witness = records.witness
    try:
        booked = await change(contract_id, key, slot)
    except NotShownError as exc:
        unseen(witness, exc)
        raise RecordNotFoundError("no such contract or slot") from exc
    except (ContractNotFoundError, SlotNotFoundError) as exc:
        raise RecordNotFoundError("no such contract or slot") from exc
    except AgreedTimeNotFoundError as exc:
        unseen(witness, exc)
        raise
    records.saw_contract(booked.contract)
    value = f"{urls.ID_AGREED_TIME}|{contract_id}/{key}"
    found = await records.search("Appointment", [("identifier", value)])
    shown = [e["resource"] for e in found["entry"]]
    if not shown:
        raise RecordNotFoundError("no such contract or slot")
    stored = shown[0]
    entry = {"fullUrl": f"{records.hapi_base}/Appointment/{stored['id']}", "resource": stored}
    return {"resourceType": "Bundle", "type": "collection", "entry": [entry]}


def _appointment_of(body: Resource) -> Resource | None:
    if body.get("resourceType") == "Appointment":
        return body
    if body.get("resourceType") == "Parameters":
        for parameter in body.get("parameter", []):
            resource = parameter.get("resource") if isinstance(parameter, dict) else None
            if parameter.get("name") == "appointment" and isinstance(resource, dict):
                return resource if resource.get("resourceType") == "Appointment" else None
    return None


def _slot_of(appointment: Resource) -> str | None:
    slots = [s.get("reference") for s in appointment.get("slot", []) if isinstance(s, dict)]
    if len(slots) != 1 or not isinstance(slots[0], str) or "Slot/" not in slots[0]:
        return None
    return slots[0].rsplit("Slot/", 1)[1].split("/")[0] or None


def _agreed_time_of(appointment: Resource) -> tuple[str, str] | None:
    values = [
        i.get("value")
        for i in appointment.get("identifier", [])
        if isinstance(i, dict) and i.get("system") == urls.ID_AGREED_TIME
    ]
    if len(values) != 1 or not isinstance(values[0], str) or "/" not in values[0]:
        return None
    contract_id, _, key = values[0].partition("/")
    return contract_id, key
