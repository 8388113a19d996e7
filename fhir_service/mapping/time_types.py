"""The clinics' time types, read from ``mappings/booking/time-types.json``.

The clinic decides which times patients see, what they are called, and what patients may do
with them online; the service only reads that decision.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from zoneinfo import ZoneInfo

from fhir_service.contract import Identifier, Organization, OrganizationKind
from fhir_service.errors import UnprocessableError
from fhir_service.mapping.tables import MAPPINGS_DIR, Language, MappingData

__all__ = [
    "CareUnitTimes",
    "ClinicConfiguration",
    "PatientRights",
    "TimeType",
    "UnknownTimeTypeError",
    "care_unit",
    "clinics",
    "time_type",
    "time_types",
    "time_zone",
]

_FILE = MAPPINGS_DIR / "booking" / "time-types.json"


class PatientRights(MappingData):
    """What a patient may do with a time of this type online, by themselves."""

    book: bool
    cancel: bool
    rebook: bool


class TimeType(MappingData):
    """One of a care unit's time types."""

    code: str
    names: dict[Language, str]
    minutes: int
    patient: PatientRights
    cancel_cutoff_hours: int
    appointment_type: str
    care_guarantee_step: str | None = None

    def name(self, language: Language) -> str:
        """What the clinic calls it for patients, in ``language``."""
        return self.names[language]

    @property
    def duration(self) -> timedelta:
        """How long one time of this type is."""
        return timedelta(minutes=self.minutes)

    @property
    def cancel_cutoff(self) -> timedelta:
        """How long before its start a patient may still cancel or rebook a time online."""
        return timedelta(hours=self.cancel_cutoff_hours)


class CareUnitTimes(MappingData):
    """One care unit's time types, and the clock its times are in."""

    care_unit: Identifier
    name: str
    kind: OrganizationKind
    time_zone: str
    time_types: tuple[TimeType, ...]

    @property
    def organization(self) -> Organization:
        """The unit as contracts name it."""
        return Organization(identifier=self.care_unit, name=self.name, kind=self.kind)

    def time_type(self, code: str) -> TimeType | None:
        """The unit's time type ``code``; None if it has none such."""
        return next((t for t in self.time_types if t.code == code), None)


class ClinicConfiguration(MappingData):
    """The whole file: every care unit that publishes bookable times."""

    url: str
    version: str
    description: str
    appointment_type_system: str
    care_units: tuple[CareUnitTimes, ...]


class UnknownTimeTypeError(UnprocessableError, LookupError):
    """The care unit has no such time type (or publishes none)."""

    title = "Does not fit"

    def __init__(self, unit: Identifier, code: str) -> None:
        known = sorted(time_types(unit))
        super().__init__(
            f"care unit {unit.value} has no time type {code!r}; it has: {known or 'none'}"
        )


@cache
def clinics() -> ClinicConfiguration:
    """The clinics' configuration, read once."""
    return ClinicConfiguration.model_validate_json(_FILE.read_text(encoding="utf-8"))


def care_unit(unit: Identifier) -> CareUnitTimes | None:
    """``unit``'s time types and clock; None when it publishes no bookable times."""
    return _unit(unit)


def time_types(unit: Identifier) -> dict[str, TimeType]:
    """The time types of ``unit``, by code; empty when it publishes none."""
    found = _unit(unit)
    return {} if found is None else {t.code: t for t in found.time_types}


def time_type(unit: Identifier, code: str) -> TimeType:
    """``unit``'s time type ``code``, or :class:`UnknownTimeTypeError`."""
    found = time_types(unit).get(code)
    if found is None:
        raise UnknownTimeTypeError(unit, code)
    return found


def time_zone(unit: Identifier) -> ZoneInfo:
    """The clock ``unit``'s times are published and counted in (Stockholm if not configured)."""
    found = _unit(unit)
    return ZoneInfo("Europe/Stockholm" if found is None else found.time_zone)


def _unit(unit: Identifier) -> CareUnitTimes | None:
    return next((u for u in clinics().care_units if u.care_unit == unit), None)
