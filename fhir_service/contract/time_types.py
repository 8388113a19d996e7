"""The care units' time types: what the clinic calls each for patients, how long its times are,
what patients may do with them online and until when.

"The clinic decides which times are shown and what they are called": each unit's own system
defines, changes and retires its time types through the API (`fhir_service.booking.catalogue`
keeps them, in HAPI). `TimeTypes` is what is defined at one moment, read without a call.
A booked time keeps the online rules it was booked under (`OnlineRules`, on the time itself):
a later change of its type applies to times booked afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from fhir_service.contract.identifiers import IdentifierKind
from fhir_service.contract.model import Identifier, OnlineRules, Organization

__all__ = [
    "CareUnitTimes",
    "Language",
    "PatientRights",
    "TimeType",
    "TimeTypeRules",
    "TimeTypes",
    "known_zone",
    "own_language",
]

Language = Literal["sv", "nb", "en"]
"""The languages patients are shown names in."""

_Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PatientRights(_Model):
    """What a patient may do with a time of this type online, by themselves."""

    book: bool
    cancel: bool
    rebook: bool


class TimeTypeRules(_Model):
    """What a care unit says of one of its time types: names and rules."""

    names: dict[Language, _Name] = Field(
        description="What the clinic calls it for patients: in sv, nb and en, all three."
    )
    minutes: int = Field(ge=5, le=24 * 60, description="How long one time of this type is.")
    patient: PatientRights
    cancel_cutoff_hours: int = Field(
        ge=0,
        le=8760,
        description="How long before its start a patient may still cancel or rebook online.",
    )
    appointment_type: Literal["CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN"] = Field(
        description="HL7 v2 table 0276: what its times are booked as."
    )
    care_guarantee_step: Code | None = Field(
        default=None,
        description="The care-guarantee step (mappings/booking/care-guarantee.json) its times "
        "count towards, if any.",
    )

    @field_validator("names")
    @classmethod
    def _every_language(cls, names: dict[Language, str]) -> dict[Language, str]:
        missing = [lang for lang in get_args(Language) if lang not in names]
        if missing:
            raise ValueError(f"needs a name in sv, nb and en; missing: {', '.join(missing)}")
        return names


class TimeType(TimeTypeRules):
    """One of a care unit's time types, as the unit defined it."""

    code: Code
    active: bool = Field(
        default=True, description="False once retired: no new times, no new bookings."
    )

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

    @property
    def online_rules(self) -> OnlineRules:
        """The rules a time booked now keeps."""
        return OnlineRules(
            cancel=self.patient.cancel,
            rebook=self.patient.rebook,
            cancel_cutoff_hours=self.cancel_cutoff_hours,
        )


class CareUnitTimes(_Model):
    """One care unit's time types, and the clock its times are in."""

    unit: Organization
    time_zone: str
    time_types: tuple[TimeType, ...]

    @property
    def language(self) -> Language:
        """The language the unit names its time types in first: its country's."""
        return own_language(self.unit.identifier)

    @property
    def zone(self) -> ZoneInfo:
        """The clock the unit's times are published and counted in."""
        return ZoneInfo(self.time_zone)

    def time_type(self, code: str) -> TimeType | None:
        """The unit's time type ``code`` in force (not retired); None if it has none such."""
        return next((t for t in self.time_types if t.code == code and t.active), None)


def known_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this host knows (Europe/Stockholm)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def own_language(unit: Identifier) -> Language:
    """The language of ``unit``'s country, which it names its time types in first."""
    return "nb" if unit.kind is IdentifierKind.ORGANISASJONSNUMMER else "sv"


class TimeTypes:
    """Every care unit's time types at one moment: read many times, never changed."""

    def __init__(self, units: Iterable[CareUnitTimes] = ()) -> None:
        self._units: Mapping[Identifier, CareUnitTimes] = {u.unit.identifier: u for u in units}

    def __len__(self) -> int:
        return sum(len(u.time_types) for u in self._units.values())

    @property
    def units(self) -> tuple[CareUnitTimes, ...]:
        """Every unit that has defined time types."""
        return tuple(self._units.values())

    def care_unit(self, unit: Identifier) -> CareUnitTimes | None:
        """``unit``'s time types and clock; None when it has defined none."""
        return self._units.get(unit)

    def known(self, unit: Identifier) -> dict[str, TimeType]:
        """Every time type ``unit`` has defined, retired ones too, by code: what its booked
        times are named by."""
        found = self._units.get(unit)
        return {} if found is None else {t.code: t for t in found.time_types}

    def offered(self, unit: Identifier, code: str) -> TimeType | None:
        """``unit``'s time type ``code`` in force; None if it has none such, or retired it."""
        found = self._units.get(unit)
        return None if found is None else found.time_type(code)

    def time_zone(self, unit: Identifier) -> ZoneInfo:
        """The clock ``unit``'s times are counted in (Stockholm for a unit without types)."""
        found = self._units.get(unit)
        return ZoneInfo("Europe/Stockholm") if found is None else found.zone
