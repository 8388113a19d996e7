"""The reader's language: Swedish, Norwegian (Bokmål) or English, by ``?lang=`` or Accept-Language.

Every answer put in a language (the plan page, the names of codes in JSON answers) picks it here,
says which it picked in ``Content-Language`` and varies by ``Accept-Language`` for caches.

>>> negotiated_language(None, "en;q=0.5, nn")
'nb'
>>> negotiated_language("en", "sv")
'en'
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Header, Query

from fhir_service.mapping import Language, language_of

__all__ = [
    "LANGUAGE_HEADERS",
    "AcceptLanguage",
    "LanguageQuery",
    "language_headers",
    "negotiated_language",
]

_DEFAULT: Language = "sv"
# RFC 9110 §12.4.2: a weight is 0 to 1 with at most three decimals.
_WEIGHT = re.compile(r"q=(0(\.\d{0,3})?|1(\.0{0,3})?)", re.IGNORECASE)

LanguageQuery = Annotated[
    Language | None,
    Query(description="The answer's language: sv, nb or en; otherwise Accept-Language, else sv."),
]
AcceptLanguage = Annotated[
    str | None,
    Header(
        alias="Accept-Language",
        description="Languages the reader prefers: sv, nb (also nn, no) or en, with q-values; "
        "Swedish when none of them is asked for.",
    ),
]

LANGUAGE_HEADERS: dict[str, dict[str, Any]] = {
    "Content-Language": {
        "description": "The language the names are in: sv, nb or en.",
        "schema": {"type": "string", "enum": ["sv", "nb", "en"]},
    },
    "Vary": {
        "description": "Accept-Language (and Accept where the form depends on it).",
        "schema": {"type": "string"},
    },
}
"""The headers `language_headers` sets, as an OpenAPI ``responses`` entry documents them."""


def negotiated_language(asked: Language | None, accept_language: str | None) -> Language:
    """``asked`` (``?lang=``) if given, else the best of ``accept_language``, else Swedish.

    The highest q-value wins and ties go to the one listed first; unknown languages, malformed
    weights and ``q=0`` are passed over.
    """
    if asked is not None:
        return asked
    choices: list[tuple[float, int, Language]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, *parameters = (piece.strip() for piece in part.split(";"))
        language = language_of(tag)
        weight = _weight(parameters)
        if language is not None and weight is not None and weight > 0:
            choices.append((-weight, position, language))
    return min(choices)[2] if choices else _DEFAULT


def language_headers(language: Language, *, vary: tuple[str, ...] = ()) -> dict[str, str]:
    """``Content-Language`` and ``Vary`` of an answer in ``language``; ``vary`` adds headers."""
    return {"Content-Language": language, "Vary": ", ".join((*vary, "Accept-Language"))}


def _weight(parameters: list[str]) -> float | None:
    for parameter in parameters:
        if parameter[:2].lower() == "q=":
            match = _WEIGHT.fullmatch(parameter)
            return float(match.group(1)) if match else None
    return 1.0
