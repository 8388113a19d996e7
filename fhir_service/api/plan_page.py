"""The coherent plan as HTML pages for the patient: plain, accessible, no JavaScript needed.

The plan page is the same plan the JSON answer holds, put in the patient's language (Swedish
unless ``?lang=`` or ``Accept-Language`` asks for Norwegian or English:
`fhir_service.api.languages`). From it the patient reaches the pages of their own acts
(`fhir_service.api.patient_page`): answering a version put to them, saying how an activity goes,
proposing a change, giving a relative leave. Texts of every page live in
``templates/plan-texts.json``; names of codes and of schedule units come from the code tables
the mapping uses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from fhir_service.booking import OnlineChanges, online_changes
from fhir_service.contract import Name, Period, PlannedTime, Schedule
from fhir_service.mapping import Language, code_table, schedule_units

__all__ = ["CLINIC_TIME", "LANGUAGES", "PAGE_HEADERS", "page_texts", "render_page"]

_TEMPLATES = Path(__file__).parent / "templates"
# Times are shown as the clinic's clock shows them; Sweden and Norway share one offset all year.
CLINIC_TIME = ZoneInfo("Europe/Stockholm")
LANGUAGES: tuple[tuple[Language, str], ...] = (
    ("sv", "Svenska"),
    ("nb", "Norsk"),
    ("en", "English"),
)

# Patient data: never cached on the way, never framed, never fetching anything else.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def render_page(
    template: str,
    language: Language,
    *,
    path: str,
    base: str,
    booking_link: str | None = None,
    **context: Any,
) -> str:
    """The page ``template`` in ``language`` with ``context``; ``path`` is the page's own (for
    the language links), ``base`` the patient's plan page, which ``page(...)`` links below.

    A booked time the clinic lets patients cancel or rebook online says until when; with
    ``booking_link`` (a template of {action}, {contract}, {time}) it links there too.
    """
    texts = page_texts(language)
    moment = datetime.now(UTC)

    def online(time: PlannedTime) -> OnlineChanges | None:
        return online_changes(time, moment, time.online_rules)

    def link(action: str, time: PlannedTime) -> str | None:
        if booking_link is None:
            return None
        values = {"action": action, "contract": time.contract_id, "time": time.key}
        return booking_link.format(**{k: quote(v, safe="") for k, v in values.items()})

    def page(*parts: str) -> str:
        below = "".join(f"/{quote(part, safe='')}" for part in parts)
        return f"{base}{below}?{urlencode({'lang': language})}"

    def day(value: date) -> str:
        month = texts["months"][value.month - 1]
        return str(texts["date"]).format(day=value.day, month=month, year=value.year)

    def when(value: datetime) -> str:
        value = value.astimezone(CLINIC_TIME)
        clock = str(texts["time"]).format(hour=f"{value.hour:02d}", minute=f"{value.minute:02d}")
        return f"{day(value.date())}, {clock}"

    def period(value: Period) -> str:
        start = f"{texts['from']} {day(value.start)}" if value.start else ""
        end = f"{texts['until']} {day(value.end)}" if value.end else ""
        return " ".join(p for p in (start, end) if p)

    def schedule(value: Schedule) -> str:
        unit = schedule_units().display(value.unit, language)
        every = unit if value.period == 1 else f"{value.period} {unit}"
        often = (
            texts["time_one"]
            if value.frequency == 1
            else f"{value.frequency} {texts['times_word']}"
        )
        return f"{often} {texts['per']} {every}"

    defaults: dict[str, Any] = {"errors": {}, "done": None, "acts": False}
    # A form shown again keeps what was typed; a field never sent is empty.
    values = defaultdict(str, context.pop("values", {}))
    return (
        _environment()
        .get_template(template)
        .render(
            **(defaults | context),
            values=values,
            lang=language,
            t=texts,
            languages=[
                (code, label, f"{path}?{urlencode({'lang': code})}") for code, label in LANGUAGES
            ],
            label=lambda table, code: code_table(table).display(code, language),
            name=_name,
            day=day,
            when=when,
            period=period,
            schedule=schedule,
            online=online,
            link=link,
            page=page,
            clinic=CLINIC_TIME,
        )
    )


def page_texts(language: Language) -> dict[str, Any]:
    """Every text of the pages in ``language``, by name."""
    texts: dict[str, Any] = _texts()[language]
    return texts


def _name(name: Name) -> str:
    return " ".join([*name.given, name.family])


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _texts() -> dict[str, Any]:
    texts: dict[str, Any] = json.loads((_TEMPLATES / "plan-texts.json").read_text("utf-8"))
    return texts
