"""``Appointment/$find`` and ``Appointment/$book``: the booking facade for platforms that speak
FHIR, in the shapes of IHE Scheduling (ITI-115, ITI-117) and on the same booking logic.

``$find`` answers free Slots as proposed Appointments that name their Slot; ``$book`` takes the
one chosen, with the identifier of the contract's agreed time it books, and answers the booked
Appointment as stored. Errors are OperationOutcomes; a Slot taken meanwhile is a 409. Both read
contracts as the booking facade does (`fhir_service.booking.shown`): an agreed time the caller
may not see is not found.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from fhir_service.api.audit_trail import change_by
from fhir_service.api.booking import offered, patient_side, shown_time, unseen
from fhir_service.api.deps import AccessDep, AuditTrailDep, HapiClientDep, StoreDep
from fhir_service.api.fhir.bodies import BodyError, fhir_body
from fhir_service.api.fhir.guard import FhirGuard
from fhir_service.api.fhir.outcomes import FHIR_JSON, fhir_response, outcome
from fhir_service.api.fhir.routes import answer, base_url, outside, rebased
from fhir_service.api.fhir.types import route_name
from fhir_service.booking.breaches import verdict_for
from fhir_service.booking.service import (
    BookingRefusedError,
    BookingService,
    SlotNotFoundError,
    SlotTakenError,
)
from fhir_service.booking.shown import AgreedTimeNotFoundError, NotShownError
from fhir_service.mapping import urls
from fhir_service.mapping.elements import guarantee_verdict, instant
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.mapping.time_types import UnknownTimeTypeError
from fhir_service.sync.store import ContractNotFoundError

__all__ = ["router"]

Resource = dict[str, Any]

router = APIRouter(prefix="/fhir", tags=["fhir"])

_FIND = "Appointment/$find"


@router.get(
    f"/{_FIND}",
    name=route_name("find", "Appointment"),
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def find(
    request: Request,
    hapi: HapiClientDep,
    store: StoreDep,
    access: AccessDep,
    trail: AuditTrailDep,
    start: Annotated[datetime, Query(description="The earliest start.")],
    end: Annotated[datetime, Query(description="The latest start (exclusive).")],
    organization: Annotated[str, Query(max_length=200, description="The unit: system|value.")],
    visit_type: Annotated[str, Query(alias="visit-type", max_length=200)],
    agreed_time: Annotated[
        str | None, Query(alias="agreed-time", max_length=200, description="<contract>/<key>")
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=100)] = 20,
) -> Response:
    """Free times of a care unit's time type as proposed Appointments (IHE ITI-115 shape)."""

    async def work() -> Response:
        code = visit_type.removeprefix(f"{urls.CS_TIME_TYPE}|")
        found = offered(organization, code)
        if found is None or (patient_side(access) and not found[1].patient.book):
            return outcome(404, "not-found", f"{organization} offers no {code!r} times to book")
        clinic, kind = found
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            return outcome(400, "invalid", "start and end need time zones, and end after start")
        if end - start > timedelta(days=92):
            return outcome(400, "too-costly", "search at most 92 days at a time")
        booking = BookingService(hapi, store)
        judged = None
        if agreed_time is not None:
            contract_id, _, key = agreed_time.partition("/")
            judged = await shown_time(booking, access, trail, contract_id, key)
            if judged is None:
                return outcome(404, "not-found", "no such contract or agreed time")
        slots = await booking.free_slots(clinic.organization, code, start, end, count=count)
        ours = base_url(request)
        identifier = clinic.care_unit
        actor = {
            "identifier": {"system": system_for(identifier.kind), "value": identifier.value},
            "display": clinic.name,
        }
        entries = []
        for slot in slots:
            appointment: Resource = {
                "resourceType": "Appointment",
                "status": "proposed",
                "start": instant(slot.start),
                "end": instant(slot.end),
                "minutesDuration": kind.minutes,
                "slot": [{"reference": f"{ours}/Slot/{slot.id}"}],
                "serviceType": [
                    {
                        "coding": [
                            {"system": urls.CS_TIME_TYPE, "code": code, "display": kind.name("sv")}
                        ]
                    }
                ],
                "participant": [{"actor": actor, "status": "needs-action"}],
            }
            if judged is not None:
                verdict = verdict_for(*judged, slot.start)
                if verdict is not None:
                    appointment["extension"] = [guarantee_verdict(verdict)]
            entries.append({"resource": appointment, "search": {"mode": "match"}})
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": entries,
        }
        return fhir_response(bundle)

    return await answer(request, work)


@router.post(
    "/Appointment/$book",
    name=route_name("book", "Appointment"),
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def book(
    request: Request,
    hapi: HapiClientDep,
    store: StoreDep,
    access: AccessDep,
    trail: AuditTrailDep,
) -> Response:
    """Book a contract's agreed time in the Slot a proposed Appointment names (ITI-117 shape)."""

    async def work() -> Response:
        try:
            body = await fhir_body(request)
        except BodyError as exc:
            return outcome(exc.status, exc.code, str(exc))
        appointment = _appointment_of(body)
        if appointment is None:
            return outcome(400, "invalid", "send an Appointment, or Parameters with appointment")
        slot = _slot_of(appointment)
        agreed = _agreed_time_of(appointment)
        if slot is None or agreed is None:
            return outcome(
                422,
                "required",
                "the Appointment names one slot and one identifier of system "
                f"{urls.ID_AGREED_TIME} whose value is <contract id>/<key>",
            )
        contract_id, key = agreed
        booking = BookingService(hapi, store)
        by = change_by(access, trail)
        try:
            booked = await booking.book(contract_id, key, slot, by, patient=patient_side(access))
        except NotShownError as exc:
            unseen(trail, exc)
            return outcome(404, "not-found", "no such contract or slot")
        except (ContractNotFoundError, SlotNotFoundError):
            return outcome(404, "not-found", "no such contract or slot")
        except AgreedTimeNotFoundError as exc:
            unseen(trail, exc)
            return outcome(404, "not-found", str(exc))
        except SlotTakenError as exc:
            return outcome(409, "conflict", str(exc))
        except BookingRefusedError as exc:
            codes = {403: "forbidden", 409: "business-rule", 422: "processing"}
            return outcome(exc.status, codes.get(exc.status, "processing"), str(exc))
        except UnknownTimeTypeError as exc:
            return outcome(422, "processing", str(exc))
        trail.saw_contract(booked.contract)
        value = f"{urls.ID_AGREED_TIME}|{contract_id}/{key}"
        found = (await hapi.search("Appointment", [("identifier", value)])).matches()[0]
        stored = (await FhirGuard(access, hapi).screened([found]))[0]
        if stored is None:
            return outside(trail)
        ours = base_url(request)
        entry = {
            "fullUrl": f"{ours}/Appointment/{stored['id']}",
            "resource": rebased(stored, hapi.base_url, ours),
        }
        return fhir_response({"resourceType": "Bundle", "type": "collection", "entry": [entry]})

    return await answer(request, work)


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
