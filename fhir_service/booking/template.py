"""Bookable times from a weekly template: opening hours per weekday, cut into times of one
length, for every day of a period, in the clinic's own clock (so 09:00 stays 09:00 across a
change to or from summer time)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fhir_service.booking.resources import PublishedTime
from fhir_service.errors import UnprocessableError

__all__ = ["MAX_TIMES", "Opening", "TemplateTooLargeError", "weekly_times"]

MAX_TIMES = 2000
"""The most times one template may make: one request publishes them in one transaction."""


@dataclass(frozen=True, slots=True)
class Opening:
    """Hours on one weekday (1 = Monday ... 7 = Sunday) when times of the type are given."""

    weekday: int
    start: time
    end: time


class TemplateTooLargeError(UnprocessableError, ValueError):
    """The template would make more than :data:`MAX_TIMES` times."""

    title = "Invalid template"


def weekly_times(
    openings: Iterable[Opening],
    first: date,
    last: date,
    length: timedelta,
    zone: ZoneInfo,
) -> list[PublishedTime]:
    """Every time of ``length`` that fits in an opening, from ``first`` to ``last`` inclusive.

    A remainder shorter than ``length`` at the end of an opening is not a time.
    """
    if last < first:
        raise ValueError("the period ends before it starts")
    if length <= timedelta(0):
        raise ValueError("a time must last")
    by_weekday: dict[int, list[Opening]] = {}
    for opening in openings:
        if not 1 <= opening.weekday <= 7:
            raise ValueError(f"weekday {opening.weekday}: use 1 (Monday) to 7 (Sunday)")
        if opening.end <= opening.start:
            raise ValueError(f"weekday {opening.weekday}: the opening ends before it starts")
        by_weekday.setdefault(opening.weekday, []).append(opening)
    times: list[PublishedTime] = []
    day = first
    while day <= last:
        for opening in by_weekday.get(day.isoweekday(), []):
            start = datetime.combine(day, opening.start, zone)
            close = datetime.combine(day, opening.end, zone)
            while start + length <= close:
                times.append(PublishedTime(start, start + length))
                if len(times) > MAX_TIMES:
                    raise TemplateTooLargeError(
                        f"the template makes more than {MAX_TIMES} times: publish a shorter period"
                    )
                start += length
        day += timedelta(days=1)
    return sorted(times, key=lambda t: t.start)
