"""``POST /fhir/HealthcareService`` and ``PUT /fhir/HealthcareService/{id}``: a care unit's EHR
defines and changes its own time types in FHIR, each a HealthcareService of the profile
``time-type-healthcareservice`` (`fhir_service.mapping.time_types`). Retiring one is an update
with ``active: false``; the JSON facade's retire also closes or counts its free times.

The same catalogue as the JSON facade's writes them (`fhir_service.booking.catalogue`): what
one facade defines the other reads, and a change applies to times booked from then on.
"""

from __future__ import annotations

from typing import Any

from fhir_service.errors import (
    ForbiddenError,
    RecordConflictError,
    RecordNotFoundError,
    UnprocessableError,
    issue,
)
from fhir_service.mapping.time_types import DefinedTimeType, defined_time_type
from fhir_service.records.reads import CallerReads
from fhir_service.records.writes import Written
from fhir_service.security.access import Denial

__all__ = ["create_time_type", "update_time_type"]

Resource = dict[str, Any]
Params = list[tuple[str, str]]


async def create_time_type(
    records: CallerReads, resource: Resource, condition: Params | None
) -> Written:
    """Define a new time type of the caller's unit; with a ``condition`` (If-None-Exist), the
    one already defined under the same identifier is the answer instead."""
    defined = _checked(records, resource)
    catalogue = records.booking.catalogue
    stored = await catalogue.stored(defined.unit.identifier, defined.kind.code)
    if stored is not None:
        if condition is not None:
            return Written(stored, created=False)
        message = f"HealthcareService/{stored['id']} is this time type: update it instead"
        raise RecordConflictError(message, [issue(message, "duplicate", "HealthcareService")])
    written = await catalogue.define(defined, resource["language"], records.change)
    return Written(written.resource, created=True)


async def update_time_type(
    records: CallerReads, rid: str, resource: Resource, if_match: str | None
) -> Written:
    """Change the time type ``HealthcareService/{rid}`` of the caller's unit (retire it with
    ``active: false``), at the version ``if_match`` names when it names one."""
    defined = _checked(records, resource)
    catalogue = records.booking.catalogue
    stored = await catalogue.stored(defined.unit.identifier, defined.kind.code)
    if stored is None or stored["id"] != rid:
        if resource.get("id") not in (None, rid):
            raise UnprocessableError(
                "the body's id differs from the one in the URL",
                [issue("differs from the id in the URL", "invalid", "HealthcareService.id")],
            )
        raise RecordNotFoundError(
            f"HealthcareService/{rid} is no time type {defined.identifier}: create it with "
            "POST, or update the one that is",
        )
    written = await catalogue.define(
        defined, resource["language"], records.change, if_match=if_match
    )
    return Written(written.resource, created=False)


def _checked(records: CallerReads, resource: Resource) -> DefinedTimeType:
    """The time type ``resource`` defines, once it is the caller's own unit's."""
    defined = defined_time_type(resource)
    walls = records.access.compartment
    if walls.patient is not None or (
        walls.organization is not None and walls.organization != defined.unit.identifier
    ):
        records.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
        raise ForbiddenError("a care unit defines its own time types only")
    return defined
