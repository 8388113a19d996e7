"""The care guarantee: the rules as data, and deadlines on the clinic's clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from fhir_service.booking.guarantee import (
    GuaranteeRuleSet,
    UnknownGuaranteeError,
    care_guarantee,
    deadline,
    easter_sunday,
    rule_set,
    verdict,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
OSLO = ZoneInfo("Europe/Oslo")

# What the law says, pinned so that an edit of the data file that changes a rule fails here:
# (jurisdiction, step) -> (days, working days, counted from, level).
RULES = {
    ("SE", "contact"): (0, False, "contact-attempt", "primary"),
    ("SE", "assessment"): (3, False, "contact", "primary"),
    ("SE", "specialist-visit"): (90, False, "referral-or-request", "specialist"),
    ("SE", "treatment"): (90, False, "treatment-decision", "specialist"),
    ("NO", "referral-assessment"): (10, True, "referral-received", "specialist"),
    ("NO", "treatment-start"): (None, False, "referral-received", "specialist"),
}


def _end_of_day(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.max, tzinfo=zone)


def test_the_data_holds_exactly_the_rules_of_the_law() -> None:
    found = {
        (rules.jurisdiction, step.code): (
            step.days,
            step.working_days,
            step.counted_from.code,
            step.level,
        )
        for rules in care_guarantee().rule_sets
        for step in rules.steps
    }

    assert found == RULES


def test_each_jurisdiction_counts_on_its_own_clock() -> None:
    assert rule_set("SE").zone == STOCKHOLM
    assert rule_set("NO").zone == OSLO


def test_every_step_of_every_rule_set_has_its_names_and_a_source() -> None:
    for rules in care_guarantee().rule_sets:
        assert set(rules.names) == {"sv", "nb", "en"}
        assert rules.source.strip()
        for step in rules.steps:
            assert set(step.names) == {"sv", "nb", "en"}, step.code
            assert all(name.strip() for name in step.names.values()), step.code
            assert set(step.counted_from.names) == {"sv", "nb", "en"}, step.code
            assert step.source.strip(), step.code


def test_norways_public_holidays_are_its_helligdager_and_1_and_17_may() -> None:
    holidays = rule_set("NO").public_holidays

    assert holidays is not None
    assert sorted(holidays.of(2026)) == [
        date(2026, 1, 1),
        date(2026, 4, 2),  # skjærtorsdag
        date(2026, 4, 3),  # langfredag
        date(2026, 4, 5),  # påskedag
        date(2026, 4, 6),  # andre påskedag
        date(2026, 5, 1),
        date(2026, 5, 14),  # Kristi himmelfartsdag
        date(2026, 5, 17),
        date(2026, 5, 24),  # pinsedag
        date(2026, 5, 25),  # andre pinsedag
        date(2026, 12, 25),
        date(2026, 12, 26),
    ]
    assert rule_set("SE").public_holidays is None


@pytest.mark.parametrize(
    ("year", "easter"),
    [
        (2024, date(2024, 3, 31)),
        (2025, date(2025, 4, 20)),
        (2027, date(2027, 3, 28)),
        (2038, date(2038, 4, 25)),  # the latest Easter can fall
        (2285, date(2285, 3, 22)),  # the earliest
        (2000, date(2000, 4, 23)),
    ],
)
def test_easter_sunday(year: int, easter: date) -> None:
    assert easter_sunday(year) == easter


@pytest.mark.parametrize("month_day", ["13-01", "02-29", "5-17"])
def test_a_holiday_date_that_is_not_there_every_year_is_refused(month_day: str) -> None:
    data = rule_set("NO").model_dump(by_alias=True)
    data["publicHolidays"]["fixedDates"] = ["05-17", month_day]

    with pytest.raises(ValidationError, match=month_day):
        GuaranteeRuleSet.model_validate(data)


def test_same_day_contact_is_in_time_at_2359_and_late_at_midnight() -> None:
    since = datetime(2025, 3, 5, 8, 15, tzinfo=STOCKHOLM)

    in_time = verdict("SE", "contact", since, datetime(2025, 3, 5, 23, 59, tzinfo=STOCKHOLM))
    late = verdict("SE", "contact", since, datetime(2025, 3, 6, 0, 0, tzinfo=STOCKHOLM))

    assert deadline("SE", "contact", since) == _end_of_day(date(2025, 3, 5), STOCKHOLM)
    assert (in_time.late, in_time.days_over) == (False, 0)
    assert (late.late, late.days_over) == (True, 1)


def test_the_day_is_the_clinics_local_day_whatever_zone_the_times_come_in() -> None:
    # 23:30 UTC is already 00:30 the next day in Stockholm: the contact was sought on the 6th.
    since = datetime(2025, 3, 5, 23, 30, tzinfo=UTC)

    due = deadline("SE", "contact", since)

    assert due == _end_of_day(date(2025, 3, 6), STOCKHOLM)
    # 22:59 UTC on the 6th is 23:59 in Stockholm: still in time.
    assert not verdict("SE", "contact", since, datetime(2025, 3, 6, 22, 59, tzinfo=UTC)).late
    assert verdict("SE", "contact", since, datetime(2025, 3, 6, 23, 0, tzinfo=UTC)).late


def test_assessment_counts_3_calendar_days_across_a_weekend() -> None:
    friday = datetime(2025, 3, 7, 10, 0, tzinfo=STOCKHOLM)

    due = deadline("SE", "assessment", friday)

    # Saturday, Sunday, Monday: calendar days, so Monday ends it (working days would be Wednesday).
    assert due == _end_of_day(date(2025, 3, 10), STOCKHOLM)
    monday = verdict("SE", "assessment", friday, datetime(2025, 3, 10, 16, 0, tzinfo=STOCKHOLM))
    tuesday = verdict("SE", "assessment", friday, datetime(2025, 3, 11, 8, 0, tzinfo=STOCKHOLM))
    assert (monday.late, monday.days_over) == (False, 0)
    assert (tuesday.late, tuesday.days_over) == (True, 1)


@pytest.mark.parametrize(
    ("since", "last_day", "offset_hours"),
    [
        # Counted in summer time, ends in winter time (the clocks go back on 26 October 2025).
        (date(2025, 8, 1), date(2025, 10, 30), 1),
        # Counted in winter time, ends in summer time (the clocks go forward on 30 March 2025).
        (date(2025, 1, 1), date(2025, 4, 1), 2),
    ],
)
@pytest.mark.parametrize("step", ["specialist-visit", "treatment"])
def test_90_days_across_a_change_of_summer_time_end_at_local_midnight(
    step: str, since: date, last_day: date, offset_hours: int
) -> None:
    start = datetime.combine(since, time(9, 0), tzinfo=STOCKHOLM)

    due = deadline("SE", step, start)

    assert (due.date() - since).days == 90
    assert due == _end_of_day(last_day, STOCKHOLM)
    assert due.timetz() == time.max.replace(tzinfo=STOCKHOLM)
    assert due.utcoffset() == timedelta(hours=offset_hours)
    # As an instant: 23:59:59.999999 local, not 90 x 24 hours after the start.
    assert due.astimezone(UTC) == datetime.combine(
        last_day, time(23 - offset_hours, 59, 59, 999999), tzinfo=UTC
    )
    last_minute = datetime.combine(last_day, time(23, 59), tzinfo=STOCKHOLM)
    assert not verdict("SE", step, start, last_minute).late
    over = verdict("SE", step, start, last_minute + timedelta(minutes=1))
    assert (over.late, over.days_over) == (True, 1)


def test_days_over_counts_local_days_past_the_deadline() -> None:
    since = datetime(2025, 1, 10, 12, 0, tzinfo=STOCKHOLM)

    result = verdict("SE", "treatment", since, datetime(2025, 4, 20, 9, 0, tzinfo=STOCKHOLM))

    assert result.deadline == _end_of_day(date(2025, 4, 10), STOCKHOLM)
    assert (result.late, result.days_over) == (True, 10)


@pytest.mark.parametrize(
    ("received", "last_day"),
    [
        (date(2025, 3, 5), date(2025, 3, 19)),  # a Wednesday: two weekends skipped
        (date(2025, 3, 7), date(2025, 3, 21)),  # a Friday
        (date(2025, 3, 8), date(2025, 3, 21)),  # a Saturday: day 1 is Monday
        (date(2025, 3, 9), date(2025, 3, 21)),  # a Sunday
        (date(2025, 3, 10), date(2025, 3, 24)),  # a Monday: ends on a Monday, not a Saturday
        # Maundy Thursday, Good Friday and Easter Monday are not working days.
        (date(2025, 4, 10), date(2025, 4, 29)),
        # Ascension Day (Thursday 29 May 2025) is not; 17 May 2025 is a Saturday anyway.
        (date(2025, 5, 19), date(2025, 6, 3)),
        # Christmas (Thursday, Friday) and New Year's Day (Thursday).
        (date(2025, 12, 22), date(2026, 1, 8)),
        # 1 May 2026 is a Friday; Ascension Day 14 May a Thursday.
        (date(2026, 4, 30), date(2026, 5, 18)),
    ],
)
def test_norways_10_working_days_skip_weekends_and_holidays(received: date, last_day: date) -> None:
    since = datetime.combine(received, time(14, 0), tzinfo=OSLO)

    due = deadline("NO", "referral-assessment", since)

    assert due == _end_of_day(last_day, OSLO)
    assert due.tzinfo == OSLO
    assert due.weekday() < 5
    last_minute = datetime.combine(last_day, time(23, 59), tzinfo=OSLO)
    assert not verdict("NO", "referral-assessment", since, last_minute).late
    assert verdict("NO", "referral-assessment", since, last_minute + timedelta(minutes=1)).late


def test_norways_treatment_needs_the_individual_deadline() -> None:
    since = datetime(2025, 3, 5, 9, 0, tzinfo=OSLO)

    with pytest.raises(ValueError, match="individual"):
        deadline("NO", "treatment-start", since)
    with pytest.raises(ValueError, match="individual"):
        verdict("NO", "treatment-start", since, since)


def test_norways_treatment_ends_with_the_individual_deadline_day() -> None:
    since = datetime(2025, 3, 5, 9, 0, tzinfo=OSLO)
    frist = date(2025, 6, 2)

    due = deadline("NO", "treatment-start", since, individual=frist)
    in_time = verdict(
        "NO", "treatment-start", since, datetime(2025, 6, 2, 15, 0, tzinfo=OSLO), individual=frist
    )
    late = verdict(
        "NO", "treatment-start", since, datetime(2025, 6, 5, 8, 0, tzinfo=OSLO), individual=frist
    )

    assert due == _end_of_day(frist, OSLO)
    assert (in_time.late, in_time.days_over) == (False, 0)
    assert (late.late, late.days_over) == (True, 3)


def test_an_individual_deadline_before_the_count_started_is_refused() -> None:
    since = datetime(2025, 3, 5, 9, 0, tzinfo=OSLO)

    with pytest.raises(ValueError, match="before the count started"):
        deadline("NO", "treatment-start", since, individual=date(2025, 3, 4))


def test_a_step_with_fixed_days_refuses_an_individual_deadline() -> None:
    since = datetime(2025, 3, 5, 9, 0, tzinfo=STOCKHOLM)

    with pytest.raises(ValueError, match="fixed limit of 90 days"):
        deadline("SE", "treatment", since, individual=date(2025, 12, 24))


def test_a_time_before_the_count_started_is_in_time() -> None:
    since = datetime(2025, 3, 5, 9, 0, tzinfo=STOCKHOLM)

    result = verdict("SE", "contact", since, since - timedelta(hours=2))

    assert (result.late, result.days_over) == (False, 0)


@pytest.mark.parametrize("moment", ["since", "at"])
def test_a_time_without_a_time_zone_is_refused(moment: str) -> None:
    aware = datetime(2025, 3, 5, 9, 0, tzinfo=STOCKHOLM)
    naive = datetime(2025, 3, 5, 9, 0)
    since, at = (naive, aware) if moment == "since" else (aware, naive)

    with pytest.raises(ValueError, match=f"{moment} must be a time-zone-aware"):
        verdict("SE", "contact", since, at)


def test_an_unknown_jurisdiction_is_refused_naming_the_known_ones() -> None:
    since = datetime(2025, 3, 5, 9, 0, tzinfo=STOCKHOLM)

    with pytest.raises(UnknownGuaranteeError, match="'DK'; known: NO, SE") as caught:
        deadline("DK", "treatment", since)

    assert isinstance(caught.value, ValueError)
    assert caught.value.known == ("NO", "SE")


@pytest.mark.parametrize(
    ("jurisdiction", "step", "known"),
    [
        # Norway has no fixed 90-day treatment limit; Sweden has no referral assessment step.
        ("NO", "treatment", ("referral-assessment", "treatment-start")),
        ("SE", "referral-assessment", ("assessment", "contact", "specialist-visit", "treatment")),
    ],
)
def test_an_unknown_step_is_refused_naming_the_known_ones(
    jurisdiction: str, step: str, known: tuple[str, ...]
) -> None:
    since = datetime(2025, 3, 5, 9, 0, tzinfo=STOCKHOLM)
    expected = f"{jurisdiction} care-guarantee step '{step}'"

    with pytest.raises(UnknownGuaranteeError, match=expected) as caught:
        verdict(jurisdiction, step, since, since)

    assert caught.value.known == known
    assert str(caught.value).endswith("known: " + ", ".join(known))
