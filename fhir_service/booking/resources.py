"""Schedules and Slots as FHIR resources: what a care unit publishes as bookable.

A care unit's time type has one Schedule (actor: the unit's HealthcareService, serviceType: the
time type), and each published time one Slot. Both are named by identifiers derived from what
they are (unit, time type, start), and written as conditional creates: publishing the same
times again finds them and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_service.contract import Organization, TimeType
from fhir_service.mapping import urls
from fhir_service.mapping.elements import identity_url, instant, key_of
from fhir_service.mapping.time_types import APPOINTMENT_TYPE_SYSTEM
from fhir_service.mapping.to_fhir import care_unit_entries

__all__ = [
    "PublishedTime",
    "schedule_identifier",
    "schedule_key",
    "service_type",
    "slot_entries",
]

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PublishedTime:
    """One bookable time, as a care unit publishes it."""

    start: datetime
    end: datetime


def schedule_key(unit: Organization, time_type: TimeType) -> str:
    """The identifier value of ``unit``'s Schedule of ``time_type``."""
    return f"{key_of(unit.identifier)}/{time_type.code}"


def schedule_identifier(unit: Organization, time_type: TimeType) -> str:
    """``system|value`` of that Schedule, for searches."""
    return f"{urls.ID_SCHEDULE}|{schedule_key(unit, time_type)}"


def service_type(time_type: TimeType) -> list[Resource]:
    """``serviceType`` of the Schedule, its Slots and the Appointments booked from them."""
    coding = {"system": urls.CS_TIME_TYPE, "code": time_type.code, "display": time_type.name("sv")}
    return [{"coding": [coding], "text": time_type.name("sv")}]


def slot_entries(
    unit: Organization, time_type: TimeType, times: list[PublishedTime]
) -> list[Resource]:
    """Transaction entries that publish ``times`` in ``unit``'s Schedule of ``time_type``.

    The Schedule and the unit's records are conditional creates, and so is each Slot (by its
    identifier: the Schedule's and the start in UTC), so the whole is safe to send again.
    """
    entries, service = care_unit_entries(unit)
    key = schedule_key(unit, time_type)
    schedule_url = identity_url("Schedule", urls.ID_SCHEDULE, key)
    entries.append(
        {
            "fullUrl": schedule_url,
            "resource": {
                "resourceType": "Schedule",
                "identifier": [{"system": urls.ID_SCHEDULE, "value": key}],
                "active": True,
                "serviceType": service_type(time_type),
                "actor": [{"reference": service}],
                "comment": f"{time_type.name('sv')}, {unit.name}",
            },
            "request": {
                "method": "POST",
                "url": "Schedule",
                "ifNoneExist": f"identifier={urls.ID_SCHEDULE}|{key}",
            },
        }
    )
    appointment_type = {
        "coding": [{"system": APPOINTMENT_TYPE_SYSTEM, "code": time_type.appointment_type}]
    }
    for time in times:
        value = f"{key}/{time.start.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}"
        entries.append(
            {
                "fullUrl": identity_url("Slot", urls.ID_SLOT, value),
                "resource": {
                    "resourceType": "Slot",
                    "identifier": [{"system": urls.ID_SLOT, "value": value}],
                    "schedule": {"reference": schedule_url},
                    "status": "free",
                    "start": instant(time.start),
                    "end": instant(time.end),
                    "serviceType": service_type(time_type),
                    "appointmentType": appointment_type,
                },
                "request": {
                    "method": "POST",
                    "url": "Slot",
                    "ifNoneExist": f"identifier={urls.ID_SLOT}|{value}",
                },
            }
        )
    return entries
