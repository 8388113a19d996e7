"""A file of care units' time types defined at start (development: ``make run``).

The file (``mappings/booking/time-types.json``) is only a seed: each entry is what the JSON
facade's ``PUT /booking/care-units/{unit}/time-types/{code}`` takes, and it is defined through
the same catalogue call, only where the unit has not defined that type itself, so a change
made through the API survives a restart.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from fhir_service.booking.catalogue import TimeTypeCatalogue
from fhir_service.contract import (
    Organization,
    OrganizationKind,
    TimeType,
    known_zone,
    own_language,
)
from fhir_service.errors import ServiceError
from fhir_service.mapping.provenance import Author
from fhir_service.mapping.time_types import DefinedTimeType, step_problems
from fhir_service.security.access import Compartment, identifier_named
from fhir_service.store import Change

__all__ = ["SEED_AUTHOR", "definitions", "seed_forever"]

_log = logging.getLogger(__name__)

SEED_AUTHOR = Author(user=("fhir-service", "time-type-seed"))
"""Who defines the seed's time types, as each one's Provenance says."""


class _Unit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    care_unit: str
    unit_name: str
    unit_kind: OrganizationKind = OrganizationKind.CARE_UNIT
    time_zone: str
    time_types: tuple[TimeType, ...]


class _Seed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    care_units: tuple[_Unit, ...]


def definitions(path: Path) -> list[DefinedTimeType]:
    """The time types the seed file ``path`` defines; `ValueError` when it is no seed."""
    seed = _Seed.model_validate_json(path.read_text(encoding="utf-8"))
    found = []
    for unit in seed.care_units:
        identifier = identifier_named(unit.care_unit, patient=False)
        if identifier is None:
            raise ValueError(f"{path}: {unit.care_unit!r} names no care unit")
        if not known_zone(unit.time_zone):
            raise ValueError(f"{path}: unknown time zone {unit.time_zone!r}")
        organization = Organization(identifier=identifier, name=unit.unit_name, kind=unit.unit_kind)
        found += [DefinedTimeType(organization, unit.time_zone, t) for t in unit.time_types]
    # What the API refuses, the seed may not hold either: said at start, every one at once,
    # rather than found when the time type is first defined.
    problems = [
        f"{d.identifier}: {problem['diagnostics']}"
        for d in found
        for problem in step_problems(d.unit, d.kind, "care_guarantee_step")
    ]
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems)}")
    return found


async def seed_forever(
    catalogue: TimeTypeCatalogue,
    seed: list[DefinedTimeType],
    ready: asyncio.Event,
    done: asyncio.Event,
) -> None:
    """Once HAPI is ready, define each of the ``seed``'s time types its unit has not defined;
    tried again until it is done, then ``done`` is set."""
    await ready.wait()
    by = Change(SEED_AUTHOR, Compartment())
    while True:
        try:
            for defined in seed:
                if await catalogue.stored(defined.unit.identifier, defined.kind.code) is None:
                    language = own_language(defined.unit.identifier)
                    await catalogue.define(defined, language, by)
        except ServiceError as exc:
            _log.warning("defining the seed's time types failed", extra={"reason": str(exc)})
            await asyncio.sleep(5)
            continue
        _log.info("the seed's time types are defined", extra={"time_types": len(seed)})
        done.set()
        return
