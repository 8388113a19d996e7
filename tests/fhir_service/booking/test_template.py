"""Times cut from a weekly template, on the clinic's clock."""

from __future__ import annotations

from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from fhir_service.booking.template import (
    MAX_TIMES,
    Opening,
    TemplateTooLargeError,
    weekly_times,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
HALF_HOUR = timedelta(minutes=30)


def test_openings_are_cut_into_whole_times_on_their_weekdays_only() -> None:
    monday = date(2031, 3, 3)
    openings = [Opening(1, time(9, 0), time(10, 15)), Opening(3, time(13, 0), time(14, 0))]

    times = weekly_times(openings, monday, monday + timedelta(days=6), HALF_HOUR, STOCKHOLM)

    assert [(t.start.strftime("%a %H:%M"), t.end.strftime("%H:%M")) for t in times] == [
        ("Mon 09:00", "09:30"),
        ("Mon 09:30", "10:00"),
        ("Wed 13:00", "13:30"),
        ("Wed 13:30", "14:00"),
    ]


def test_nine_stays_nine_on_the_clinics_clock_across_the_end_of_summer_time() -> None:
    # Summer time ends on Sunday 26 October 2031 in Sweden.
    openings = [Opening(weekday, time(9, 0), time(9, 30)) for weekday in range(1, 8)]

    times = weekly_times(openings, date(2031, 10, 25), date(2031, 10, 27), HALF_HOUR, STOCKHOLM)

    assert [t.start.hour for t in times] == [9, 9, 9]
    assert [t.start.utcoffset() for t in times] == [
        timedelta(hours=2),
        timedelta(hours=1),
        timedelta(hours=1),
    ]


def test_a_template_making_too_many_times_is_refused() -> None:
    every_day = [Opening(weekday, time(0, 0), time(23, 59)) for weekday in range(1, 8)]

    with pytest.raises(TemplateTooLargeError, match=str(MAX_TIMES)):
        weekly_times(every_day, date(2031, 1, 1), date(2031, 3, 1), HALF_HOUR, STOCKHOLM)


@pytest.mark.parametrize(
    ("openings", "first", "last", "message"),
    [
        ([Opening(8, time(9), time(10))], date(2031, 1, 1), date(2031, 1, 2), "weekday 8"),
        ([Opening(1, time(10), time(9))], date(2031, 1, 1), date(2031, 1, 2), "ends before"),
        ([Opening(1, time(9), time(10))], date(2031, 1, 2), date(2031, 1, 1), "ends before"),
    ],
)
def test_invalid_templates_are_refused(
    openings: list[Opening], first: date, last: date, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        weekly_times(openings, first, last, HALF_HOUR, STOCKHOLM)
