"""What the booking facades share about their caller: which times they may be offered, and what
of a contract's agreed times they are shown.

Callers without a care unit (booking platforms, patients) are the patient's side: they see only
the time types the clinic lets patients book, and are held to the clinic's rules online.
"""

from __future__ import annotations

from fhir_service.audit.witness import Witness
from fhir_service.booking.service import BookingService
from fhir_service.booking.shown import AgreedTimeNotFoundError, NotShownError
from fhir_service.contract import (
    AgreedTime,
    CareUnitTimes,
    Contract,
    Identifier,
    TimeType,
    TimeTypes,
)
from fhir_service.security.access import Access, identifier_named
from fhir_service.store import ContractNotFoundError

__all__ = ["offered", "patient_side", "shown_time", "unit_of", "unseen"]


async def shown_time(
    booking: BookingService, access: Access, trail: Witness, contract_id: str, key: str
) -> tuple[Contract, AgreedTime] | None:
    """The contract and its agreed time ``key`` as the caller sees them; None when the caller
    is shown no such time (answer 404, whatever the reason: the trail records it)."""
    try:
        found = await booking.shown_to(access.compartment).read(contract_id)
        time = found.time(key)
    except (NotShownError, AgreedTimeNotFoundError) as exc:
        unseen(trail, exc)
        return None
    except ContractNotFoundError:
        return None
    trail.saw_contract(found.contract)
    return found.contract, time


def unseen(trail: Witness, exc: NotShownError | AgreedTimeNotFoundError) -> None:
    """Record in the audit trail what was asked for and why it was answered as not found."""
    trail.saw_contract(exc.contract)
    if exc.reason is not None:
        trail.refused(exc.reason)


def unit_of(text: str) -> Identifier | None:
    """The care unit ``text`` names (kind|value or system|value); None if it names none."""
    return identifier_named(text, patient=False)


def offered(types: TimeTypes, unit: str, code: str) -> tuple[CareUnitTimes, TimeType] | None:
    """The care unit ``unit`` names and its time type ``code`` in force; None if it offers
    none such."""
    identifier = unit_of(unit)
    clinic = None if identifier is None else types.care_unit(identifier)
    kind = None if clinic is None else clinic.time_type(code)
    return None if clinic is None or kind is None else (clinic, kind)


def patient_side(access: Access) -> bool:
    """Patients and booking platforms: held to what the clinic lets patients do online."""
    return access.compartment.organization is None
