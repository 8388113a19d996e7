"""The booking facade's walls, applied by the caller's booking itself before HAPI is asked, and
recorded: a unit publishes and judges its own times only, a patient reads their own."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fhir_service.booking import BookingService, TimeTypeCatalogue
from fhir_service.contract import Identifier, IdentifierKind
from fhir_service.errors import (
    ForbiddenError,
    InvalidRequestError,
    RecordNotFoundError,
    UnprocessableError,
)
from fhir_service.fhir import HapiClient
from fhir_service.mapping import Author
from fhir_service.records import CallerBooking, FreeSlotsAsked
from fhir_service.security import Compartment, Denial, Requirement
from fhir_service.store import Change, ContractStore
from tests.fhir_service.records.support import RecordedWitness, access_within
from tests.support import unique_hsa_id, unique_personnummer

# A unit with time types in mappings/booking/time-types.json.
KNEE_UNIT = Identifier(kind=IdentifierKind.HSA_ID, value="SE2321000065-1003")


def _caller(hapi: HapiClient, walls: Compartment) -> tuple[CallerBooking, RecordedWitness]:
    seen = RecordedWitness()
    access = access_within(walls, Requirement("Slot", "c"))

    def change() -> Change:
        return Change(Author(("tests", "someone")), walls)

    booking = BookingService(hapi, ContractStore(hapi), TimeTypeCatalogue(hapi))
    return CallerBooking(access, seen, change, booking), seen


def _patient() -> Identifier:
    return Identifier(kind=IdentifierKind.PERSONNUMMER, value=unique_personnummer())


async def test_only_the_unit_itself_publishes_its_times(hapi: HapiClient) -> None:
    patient, _ = _caller(hapi, Compartment(patient=_patient()))
    other, _ = _caller(
        hapi,
        Compartment(organization=Identifier(kind=IdentifierKind.HSA_ID, value=unique_hsa_id())),
    )

    for caller in (patient, other):
        with pytest.raises(ForbiddenError):
            await caller.publish("hsa-id|SE2321000065-1003", "followup-visit", [], None)


async def test_a_patient_reads_their_own_booked_times_only_and_the_record_says_so(
    hapi: HapiClient,
) -> None:
    booking, seen = _caller(hapi, Compartment(patient=_patient()))

    with pytest.raises(ForbiddenError):
        await booking.booked_times(f"personnummer|{unique_personnummer()}")
    with pytest.raises(UnprocessableError, match="patient's identifier"):
        await booking.booked_times("hsa-id|SE2321000065-1003")

    assert seen.refusals == [Denial.OUTSIDE_COMPARTMENT.value]


async def test_a_unit_judges_its_own_contracts_against_the_care_guarantee_only(
    hapi: HapiClient,
) -> None:
    booking, seen = _caller(hapi, Compartment(organization=KNEE_UNIT))

    with pytest.raises(ForbiddenError):
        await booking.breaches("hsa-id|SE2321000065-1254")

    assert seen.refusals == [Denial.OUTSIDE_COMPARTMENT.value]


async def test_the_patients_side_is_not_shown_times_the_clinic_books_itself(
    hapi: HapiClient,
) -> None:
    booking, _ = _caller(hapi, Compartment(patient=_patient()))

    with pytest.raises(RecordNotFoundError, match="not booked online"):
        await booking.free_slots(FreeSlotsAsked("hsa-id|SE2321000065-1003", "preoperative-visit"))


def _at(hour: int) -> datetime:
    return datetime(2030, 1, 7, hour, tzinfo=UTC)


async def test_free_times_are_asked_for_a_period_that_runs_forwards(hapi: HapiClient) -> None:
    booking, _ = _caller(hapi, Compartment(organization=KNEE_UNIT))
    asked = FreeSlotsAsked("hsa-id|SE2321000065-1003", "followup-visit")

    with pytest.raises(InvalidRequestError, match="to is not after from"):
        await booking.free_slots(
            FreeSlotsAsked(asked.care_unit, asked.time_type, start=_at(10), end=_at(9))
        )
    with pytest.raises(InvalidRequestError, match="together"):
        await booking.free_slots(FreeSlotsAsked(asked.care_unit, asked.time_type, contract="c-1"))
