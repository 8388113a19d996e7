"""The coherent plan as an HTML page for the patient: plain, accessible, no JavaScript needed.

The page is the same plan the JSON answer holds, put in the patient's language (Swedish unless
``?lang=`` or ``Accept-Language`` asks for Norwegian or English). Texts of the page live in
``templates/plan-texts.json``; names of codes come from the code tables the mapping uses.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from fhir_service.contract import Name, Period, Schedule
from fhir_service.contract.plan import CoherentPlan
from fhir_service.mapping.tables import Language, code_table

__all__ = ["LANGUAGES", "page_language", "render_plan"]

_TEMPLATES = Path(__file__).parent / "templates"
# Times are shown as the clinic's clock shows them; Sweden and Norway share one offset all year.
_CLINIC_TIME = ZoneInfo("Europe/Stockholm")
LANGUAGES: tuple[tuple[Language, str], ...] = (
    ("sv", "Svenska"),
    ("nb", "Norsk"),
    ("en", "English"),
)
# Norwegian comes as nb, nn or no; Nynorsk readers get Bokmål rather than Swedish.
_TAGS: dict[str, Language] = {"sv": "sv", "nb": "nb", "nn": "nb", "no": "nb", "en": "en"}

# Patient data: never cached on the way, never framed, never fetching anything else.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def page_language(asked: str | None, accept_language: str | None) -> Language:
    """The page's language: ``asked`` (``?lang=``) if set, else the best of Accept-Language."""
    if asked in _TAGS:
        return _TAGS[asked]
    choices: list[tuple[float, int, Language]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, parameters = part.strip().partition(";")
        language = _TAGS.get(tag.strip().lower().split("-")[0])
        if language is None:
            continue
        quality = 1.0
        if parameters.strip().startswith("q="):
            try:
                quality = float(parameters.strip()[2:])
            except ValueError:
                continue
        if quality > 0:
            choices.append((-quality, position, language))
    return min(choices)[2] if choices else "sv"


def render_plan(plan: CoherentPlan, language: Language, path: str) -> str:
    """The page of ``plan`` in ``language``; ``path`` is the page's own, for language links."""
    texts = _texts()[language]

    def day(value: date) -> str:
        month = texts["months"][value.month - 1]
        return str(texts["date"]).format(day=value.day, month=month, year=value.year)

    def when(value: datetime) -> str:
        value = value.astimezone(_CLINIC_TIME)
        clock = str(texts["time"]).format(hour=f"{value.hour:02d}", minute=f"{value.minute:02d}")
        return f"{day(value.date())}, {clock}"

    def period(value: Period) -> str:
        start = f"{texts['from']} {day(value.start)}" if value.start else ""
        end = f"{texts['until']} {day(value.end)}" if value.end else ""
        return " ".join(p for p in (start, end) if p)

    def schedule(value: Schedule) -> str:
        unit = texts["units"][value.unit]
        every = unit if value.period == 1 else f"{value.period} {unit}"
        often = (
            texts["time_one"]
            if value.frequency == 1
            else f"{value.frequency} {texts['times_word']}"
        )
        return f"{often} {texts['per']} {every}"

    return (
        _environment()
        .get_template("plan.html")
        .render(
            plan=plan,
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
        )
    )


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
