"""National identifiers of people, professionals and organisations: validation and canonical form.

Kinds (the enum values are what the code tables in ``mappings/`` are keyed by):

- personnummer: Swedish personal identity number (Skatteverket), YYYYMMDDNNNC.
- samordningsnummer: Swedish coordination number for people not in the population register.
- hsa-id: Swedish HSA identity of a care professional or unit (Inera), SE<org number>-<suffix>.
- fodselsnummer: Norwegian national identity number (fødselsnummer), DDMMYYIIIKK.
- d-nummer: Norwegian D number for people staying in Norway temporarily.
- hpr-nummer: Norwegian Health Personnel Register number of an authorised professional.
- organisasjonsnummer: Norwegian organisation number in the Central Coordinating Register.

Pure Python, standard library only.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Callable, Sequence
from enum import StrEnum

__all__ = ["IdentifierKind", "InvalidIdentifierError", "is_valid", "normalize"]


class IdentifierKind(StrEnum):
    """The kinds of national identifier the service validates."""

    PERSONNUMMER = "personnummer"
    SAMORDNINGSNUMMER = "samordningsnummer"
    HSA_ID = "hsa-id"
    FODSELSNUMMER = "fodselsnummer"
    D_NUMMER = "d-nummer"
    HPR_NUMMER = "hpr-nummer"
    ORGANISASJONSNUMMER = "organisasjonsnummer"
    OTHER = "other"
    """Another issuer's (a hospital's record number, another country's national number): kept
    with the system that issued it, never checked, never taken for a national identifier."""


class InvalidIdentifierError(ValueError):
    """A value is not a valid identifier of its kind.

    Attributes:
        kind: The kind the value was checked as.
        value: The value exactly as given.
        reason: Why it was rejected, phrased so a person can correct it.
    """

    def __init__(self, kind: IdentifierKind, value: str, reason: str) -> None:
        # repr() quotes the value and escapes control characters, so a hostile value cannot
        # forge extra lines in a log or a problem+json detail.
        super().__init__(f"invalid {kind} {value!r}: {reason}")
        self.kind = kind
        self.value = value
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidIdentifierError], tuple[IdentifierKind, str, str]]:
        # The default would call __init__ with the message alone, so the error could not cross
        # a process boundary (multiprocessing, logging queues).
        return type(self), (self.kind, self.value, self.reason)


class _RejectedError(Exception):
    """Internal: a validator's reason, turned into InvalidIdentifierError by normalize()."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# [0-9] rather than \d: \d also matches other scripts' digits, which int() would then accept.
_SWEDISH_PERSON = re.compile(r"([0-9]{8})-?([0-9]{4})")
_SWEDISH_PERSON_SHORT = re.compile(r"[0-9]{6}[-+]?[0-9]{4}")
_HSA_ID = re.compile(r"[Ss][Ee](?:[0-9]{10}|[0-9]{12})-[A-Za-z0-9]{1,19}")
_HSA_ID_MAX_LENGTH = 31
_ELEVEN_DIGITS = re.compile(r"[0-9]{11}")
_HPR_NUMMER = re.compile(r"[0-9]{4,9}")
_NINE_DIGITS = re.compile(r"[0-9]{9}")

_SAMORDNINGSNUMMER_DAY_OFFSET = 60
_D_NUMMER_DAY_OFFSET = 40

_FODSELSNUMMER_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_FODSELSNUMMER_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ORGANISASJONSNUMMER_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)


def normalize(kind: IdentifierKind, value: str) -> str:
    """Return the canonical form of an identifier.

    Surrounding whitespace is ignored. Canonical forms: personnummer and samordningsnummer as 12
    digits without hyphen, HSA-id in upper case, the Norwegian kinds as their digits.

    Raises:
        InvalidIdentifierError: The value is not a valid identifier of ``kind``.
    """
    kind = IdentifierKind(kind)
    text = value.strip()
    try:
        if not text:
            raise _RejectedError("is empty")
        return _VALIDATORS[kind](text)
    except _RejectedError as rejected:
        raise InvalidIdentifierError(kind, value, rejected.reason) from None


def is_valid(kind: IdentifierKind, value: str) -> bool:
    """Tell whether ``value`` is a valid identifier of ``kind`` (see `normalize`)."""
    try:
        normalize(kind, value)
    except InvalidIdentifierError:
        return False
    return True


def _personnummer(text: str) -> str:
    return _swedish_person(text, coordination=False)


def _samordningsnummer(text: str) -> str:
    return _swedish_person(text, coordination=True)


def _swedish_person(text: str, *, coordination: bool) -> str:
    match = _SWEDISH_PERSON.fullmatch(text)
    if match is None:
        if _SWEDISH_PERSON_SHORT.fullmatch(text):
            # The 10-digit form leaves the century to a separator that changes at 100 years of
            # age; only the 12-digit form is unambiguous.
            raise _RejectedError("use the 12-digit form YYYYMMDDNNNN")
        raise _RejectedError("expected 12 digits YYYYMMDDNNNN, optionally YYYYMMDD-NNNN")
    digits = match[1] + match[2]
    year, month, day = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    offset = _SAMORDNINGSNUMMER_DAY_OFFSET
    if coordination:
        if _is_date(year, month, day):
            raise _RejectedError(
                f"day {day:02d} makes it a personnummer; "
                f"a samordningsnummer has the day plus {offset} ({offset + 1}-{offset + 31})"
            )
        if not _is_date(year, month, day - offset):
            raise _RejectedError(
                f"{digits[:8]} is not a calendar date once {offset} is taken from the day"
            )
    elif not _is_date(year, month, day):
        if _is_date(year, month, day - offset):
            raise _RejectedError(
                f"day {day:02d} makes it a samordningsnummer (day plus {offset}), "
                "not a personnummer"
            )
        raise _RejectedError(f"{digits[:8]} is not a calendar date")
    # The check digit covers the 10-digit form only, so the century is outside it.
    expected = _luhn_check_digit(digits[2:11])
    if int(digits[11]) != expected:
        raise _RejectedError(f"check digit is {digits[11]}, expected {expected}")
    return digits


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def _luhn_check_digit(digits: str) -> int:
    total = 0
    for index, char in enumerate(digits):
        product = int(char) * (2 if index % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return (10 - total % 10) % 10


def _hsa_id(text: str) -> str:
    if not _HSA_ID.fullmatch(text):
        raise _RejectedError(
            "expected SE, a 10- or 12-digit organisation number, a hyphen and 1-19 letters "
            "or digits, e.g. SE2321000016-1003"
        )
    if len(text) > _HSA_ID_MAX_LENGTH:
        raise _RejectedError(
            f"is {len(text)} characters long, at most {_HSA_ID_MAX_LENGTH} allowed"
        )
    return text.upper()


def _fodselsnummer(text: str) -> str:
    return _norwegian_person(text, d_nummer=False)


def _d_nummer(text: str) -> str:
    return _norwegian_person(text, d_nummer=True)


def _norwegian_person(text: str, *, d_nummer: bool) -> str:
    if not _ELEVEN_DIGITS.fullmatch(text):
        raise _RejectedError("expected 11 digits DDMMYYIIIKK")
    day, month = int(text[0:2]), int(text[2:4])
    offset = _D_NUMMER_DAY_OFFSET
    if d_nummer:
        if _is_day_of_month(day, month):
            raise _RejectedError(
                f"day {day:02d} makes it a fodselsnummer; "
                f"a d-nummer has the day plus {offset} ({offset + 1}-{offset + 31})"
            )
        if not _is_day_of_month(day - offset, month):
            raise _RejectedError(
                f"{text[:4]} is not a valid day and month once {offset} is taken from the day"
            )
    elif not _is_day_of_month(day, month):
        if _is_day_of_month(day - offset, month):
            raise _RejectedError(
                f"day {day:02d} makes it a d-nummer (day plus {offset}), not a fodselsnummer"
            )
        raise _RejectedError(f"{text[:4]} is not a valid day and month")
    _require_mod11(text[:9], _FODSELSNUMMER_K1_WEIGHTS, text[9], "first check digit")
    _require_mod11(text[:10], _FODSELSNUMMER_K2_WEIGHTS, text[10], "second check digit")
    return text


def _is_day_of_month(day: int, month: int) -> bool:
    # The century follows from the individual number by rules with gaps and exceptions, so the
    # year is not checked; a leap year's month lengths keep every 29 February acceptable.
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(2000, month)[1]


def _organisasjonsnummer(text: str) -> str:
    if not _NINE_DIGITS.fullmatch(text):
        raise _RejectedError("expected 9 digits")
    _require_mod11(text[:8], _ORGANISASJONSNUMMER_WEIGHTS, text[8], "check digit")
    return text


def _require_mod11(digits: str, weights: Sequence[int], actual: str, name: str) -> None:
    remainder = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    expected = (11 - remainder) % 11
    if expected == 10:
        # No digit satisfies the check, so such numbers are never issued.
        raise _RejectedError(f"{name} computes to 10, so no valid number has these digits")
    if int(actual) != expected:
        raise _RejectedError(f"{name} is {actual}, expected {expected}")


def _hpr_nummer(text: str) -> str:
    if not _HPR_NUMMER.fullmatch(text):
        raise _RejectedError("expected 4 to 9 digits")
    return text


def _other(text: str) -> str:
    if len(text) > _OTHER_LENGTH or any(c.isspace() and c != " " for c in text):
        raise _RejectedError(f"expected at most {_OTHER_LENGTH} characters on one line")
    return text


_OTHER_LENGTH = 200

_VALIDATORS: dict[IdentifierKind, Callable[[str], str]] = {
    IdentifierKind.PERSONNUMMER: _personnummer,
    IdentifierKind.SAMORDNINGSNUMMER: _samordningsnummer,
    IdentifierKind.HSA_ID: _hsa_id,
    IdentifierKind.FODSELSNUMMER: _fodselsnummer,
    IdentifierKind.D_NUMMER: _d_nummer,
    IdentifierKind.HPR_NUMMER: _hpr_nummer,
    IdentifierKind.ORGANISASJONSNUMMER: _organisasjonsnummer,
    IdentifierKind.OTHER: _other,
}
