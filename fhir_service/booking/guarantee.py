"""The care guarantee: by when each step of a patient's way into care must happen.

The rules are data (``mappings/booking/care-guarantee.json``), one rule set per jurisdiction:
Sweden's vårdgaranti (contact the same day, assessment within 3 days, a specialist visit and
planned treatment within 90 days each) and Norway's assessment of a referral within 10 working
days (Monday to Friday, skipping Norway's public holidays, Easter's among them) and the deadline
for necessary specialist care that is set for each patient.

A deadline is the end of its last day on the clinic's clock (Europe/Stockholm, Europe/Oslo):
counting is by local dates, so summer time and the caller's own time zone change neither the
day nor the local 23:59:59.999999 it ends at. Pure: no I/O but reading the data file once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import NonNegativeInt, field_validator

from fhir_service.mapping.tables import MAPPINGS_DIR, Language, MappingData

__all__ = [
    "CareGuarantee",
    "CountedFrom",
    "GuaranteeRuleSet",
    "GuaranteeStep",
    "Level",
    "PublicHolidays",
    "UnknownGuaranteeError",
    "Verdict",
    "care_guarantee",
    "deadline",
    "easter_sunday",
    "guarantee_step",
    "rule_set",
    "verdict",
]

_FILE = MAPPINGS_DIR / "booking" / "care-guarantee.json"

Level = Literal["primary", "specialist"]


class CountedFrom(MappingData):
    """The event a step's days are counted from, e.g. the referral being issued."""

    code: str
    names: dict[Language, str]


class GuaranteeStep(MappingData):
    """One limit of a care guarantee, e.g. a specialist visit within 90 days of the referral."""

    code: str
    names: dict[Language, str]
    # None: no fixed limit; the deadline is set per case (Norway's juridisk frist).
    days: NonNegativeInt | None
    working_days: bool
    counted_from: CountedFrom
    level: Level
    source: str
    note: str | None = None

    def name(self, language: Language) -> str:
        """The step's name in ``language``."""
        return self.names[language]


class PublicHolidays(MappingData):
    """The days a jurisdiction's working days skip besides Saturday and Sunday."""

    fixed_dates: tuple[str, ...]
    """Month and day, ``MM-DD``, the same every year."""
    days_from_easter: tuple[int, ...]
    """Days after (negative: before) Easter Sunday, e.g. -2 for Good Friday."""
    source: str

    @field_validator("fixed_dates")
    @classmethod
    def _month_days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for month_day in value:
            # Checked in a common year: a holiday on 29 February would not exist most years.
            try:
                date.fromisoformat(f"2001-{month_day}")
            except ValueError:
                raise ValueError(f"{month_day!r} is not a month and day (MM-DD)") from None
        return value

    def of(self, year: int) -> frozenset[date]:
        """The public holidays of ``year``."""
        easter = easter_sunday(year)
        fixed = {date.fromisoformat(f"{year}-{month_day}") for month_day in self.fixed_dates}
        moving = {easter + timedelta(days=offset) for offset in self.days_from_easter}
        return frozenset(fixed | moving)


class GuaranteeRuleSet(MappingData):
    """A jurisdiction's care guarantee: its steps and the clock their days are counted on."""

    jurisdiction: str
    names: dict[Language, str]
    time_zone: str
    source: str
    note: str | None = None
    public_holidays: PublicHolidays | None = None
    steps: tuple[GuaranteeStep, ...]

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # A misspelt zone would otherwise surface only at the first deadline asked for.
        try:
            ZoneInfo(value)
        except ZoneInfoNotFoundError as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The clinic's clock: the days of this jurisdiction's limits are its local dates."""
        return ZoneInfo(self.time_zone)

    def is_working_day(self, day: date) -> bool:
        """Monday to Friday, and not one of this jurisdiction's public holidays."""
        if day.weekday() >= 5:
            return False
        return self.public_holidays is None or day not in self.public_holidays.of(day.year)

    def step(self, code: str) -> GuaranteeStep:
        """The step ``code``, or :class:`UnknownGuaranteeError` naming the steps there are."""
        found = next((s for s in self.steps if s.code == code), None)
        if found is None:
            raise UnknownGuaranteeError(
                f"{self.jurisdiction} care-guarantee step", code, [s.code for s in self.steps]
            )
        return found


class CareGuarantee(MappingData):
    """The whole file: every jurisdiction's rule set."""

    url: str
    version: str
    description: str
    rule_sets: tuple[GuaranteeRuleSet, ...]


class UnknownGuaranteeError(ValueError):
    """A jurisdiction or step the care-guarantee rules do not hold."""

    def __init__(self, what: str, value: str, known: list[str]) -> None:
        super().__init__(f"unknown {what} {value!r}; known: {', '.join(sorted(known))}")
        self.what = what
        self.value = value
        self.known = tuple(sorted(known))


@dataclass(frozen=True)
class Verdict:
    """Whether a time starting at a given moment keeps the guarantee, and by how much not."""

    late: bool
    deadline: datetime
    # Local calendar days from the deadline's day to the time's day; 0 when in time.
    days_over: int


@cache
def care_guarantee() -> CareGuarantee:
    """The care-guarantee rules, read once."""
    return CareGuarantee.model_validate_json(_FILE.read_text(encoding="utf-8"))


def rule_set(jurisdiction: str) -> GuaranteeRuleSet:
    """The rule set of ``jurisdiction`` (``"SE"``, ``"NO"``), or :class:`UnknownGuaranteeError`."""
    rule_sets = care_guarantee().rule_sets
    found = next((r for r in rule_sets if r.jurisdiction == jurisdiction), None)
    if found is None:
        raise UnknownGuaranteeError(
            "care-guarantee jurisdiction", jurisdiction, [r.jurisdiction for r in rule_sets]
        )
    return found


def guarantee_step(jurisdiction: str, step: str) -> GuaranteeStep:
    """The step ``step`` of ``jurisdiction``'s rules, or :class:`UnknownGuaranteeError`."""
    return rule_set(jurisdiction).step(step)


def deadline(
    jurisdiction: str, step: str, since: datetime, *, individual: date | None = None
) -> datetime:
    """The last moment ``step`` may happen when its count started at ``since``.

    That is the end (23:59:59.999999, clinic time) of the local day that is ``days`` calendar
    days, or working days (Monday to Friday but the rule set's public holidays), after
    ``since``'s local date; 0 days is the end of that same day. A step without fixed days
    needs ``individual``, the deadline date set for the case; a step with fixed days refuses
    one.
    """
    rules = rule_set(jurisdiction)
    rule = rules.step(step)
    zone = rules.zone
    start = _local(since, zone, "since").date()
    if rule.days is None:
        if individual is None:
            raise ValueError(
                f"{jurisdiction} care-guarantee step {step!r} has no fixed number of days: "
                "its deadline is set per case; pass that date as individual="
            )
        if individual < start:
            raise ValueError(
                f"the individual deadline {individual} lies before the count started ({start})"
            )
        last = individual
    elif individual is not None:
        # Silently ignoring it would hide a caller mixing up steps.
        raise ValueError(
            f"{jurisdiction} care-guarantee step {step!r} has a fixed limit of {rule.days} days; "
            "it takes no individual deadline"
        )
    elif rule.working_days:
        last = _add_working_days(start, rule.days, rules)
    else:
        last = start + timedelta(days=rule.days)
    return datetime.combine(last, time.max, tzinfo=zone)


def verdict(
    jurisdiction: str,
    step: str,
    since: datetime,
    at: datetime,
    *,
    individual: date | None = None,
) -> Verdict:
    """Whether a time starting at ``at`` keeps ``step``'s deadline counted from ``since``.

    Late means after the deadline; ``days_over`` counts local calendar days past its day.
    """
    due = deadline(jurisdiction, step, since, individual=individual)
    local_at = _local(at, rule_set(jurisdiction).zone, "at")
    # Compared as instants: two times on one ZoneInfo compare by wall clock, which is ambiguous
    # in the hour summer time ends.
    late = local_at.astimezone(UTC) > due.astimezone(UTC)
    days_over = (local_at.date() - due.date()).days if late else 0
    return Verdict(late=late, deadline=due, days_over=days_over)


def _local(moment: datetime, zone: ZoneInfo, name: str) -> datetime:
    # A naive time has no place on the clinic's clock; guessing one would shift the day.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a time-zone-aware datetime, got {moment.isoformat()}")
    return moment.astimezone(zone)


def easter_sunday(year: int) -> date:
    """Easter Sunday of ``year`` in the Gregorian calendar (the anonymous Gregorian computus)."""
    golden = year % 19
    century, of_century = divmod(year, 100)
    leap_centuries, century_rest = divmod(century, 4)
    moon_correction = (century + 8) // 25
    solar_correction = (century - moon_correction + 1) // 3
    epact = (19 * golden + century - leap_centuries - solar_correction + 15) % 30
    leap_years, year_rest = divmod(of_century, 4)
    weekday = (32 + 2 * century_rest + 2 * leap_years - epact - year_rest) % 7
    shift = (golden + 11 * epact + 22 * weekday) // 451
    month, day = divmod(epact + weekday - 7 * shift + 114, 31)
    return date(year, month, day + 1)


def _add_working_days(start: date, days: int, rules: GuaranteeRuleSet) -> date:
    # The start day itself never counts, as with calendar days: day 1 is the next working day.
    day = start
    remaining = days
    while remaining:
        day += timedelta(days=1)
        if rules.is_working_day(day):
            remaining -= 1
    return day
