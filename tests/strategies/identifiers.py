"""Hypothesis strategies for valid national identifiers, in canonical form.

Check digits are computed here independently of ``fhir_service.contract.identifiers``: each is
found as the digit that makes the whole number satisfy its checksum, not with the module's
"subtract the remainder" arithmetic, so a shared mistake is unlikely.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from hypothesis import assume
from hypothesis import strategies as st

__all__ = [
    "d_nummer",
    "fodselsnummer",
    "hpr_nummer",
    "hsa_id",
    "organisasjonsnummer",
    "personnummer",
    "samordningsnummer",
]

# Mod-11 weights including the check digit's own weight 1: a valid number sums to 0 mod 11.
_FNR_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2, 1)
_FNR_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1)
_ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2, 1)

_HSA_SUFFIX_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def personnummer() -> st.SearchStrategy[str]:
    """Valid personnummer, 12 digits YYYYMMDDNNNC."""
    return _swedish_person(day_offset=0)


def samordningsnummer() -> st.SearchStrategy[str]:
    """Valid samordningsnummer: a personnummer with 60 added to the day."""
    return _swedish_person(day_offset=60)


def fodselsnummer() -> st.SearchStrategy[str]:
    """Valid Norwegian fødselsnummer, 11 digits DDMMYYIIIKK."""
    return _norwegian_person(day_offset=0)


def d_nummer() -> st.SearchStrategy[str]:
    """Valid Norwegian D-nummer: a fødselsnummer with 40 added to the day."""
    return _norwegian_person(day_offset=40)


def hsa_id() -> st.SearchStrategy[str]:
    """Valid HSA-ids in upper case: SE, a 10- or 12-digit number, a hyphen, a suffix."""
    return _hsa_id()


def hpr_nummer() -> st.SearchStrategy[str]:
    """Valid HPR numbers: 4 to 9 digits, leading zeros included."""
    return st.from_regex(r"[0-9]{4,9}", fullmatch=True)


def organisasjonsnummer() -> st.SearchStrategy[str]:
    """Valid Norwegian organisation numbers, 9 digits with a mod-11 check digit."""
    return _organisasjonsnummer()


def _digits(draw: st.DrawFn, count: int) -> str:
    return "".join(str(draw(st.integers(0, 9))) for _ in range(count))


@st.composite
def _swedish_person(draw: st.DrawFn, day_offset: int) -> str:
    born = draw(st.dates(datetime.date(1800, 1, 1), datetime.date(2099, 12, 31)))
    serial = draw(st.integers(0, 999))
    body = f"{born:%Y%m}{born.day + day_offset:02d}{serial:03d}"
    (check,) = [c for c in range(10) if _luhn_sum(body[2:] + str(c)) % 10 == 0]
    return f"{body}{check}"


def _luhn_sum(digits: str) -> int:
    # Luhn as usually stated: double every second digit counting from the right, add the
    # digits of each product.
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += sum(int(d) for d in str(value))
    return total


@st.composite
def _norwegian_person(draw: st.DrawFn, day_offset: int) -> str:
    # The year is any year: a leap year so every 29 February is drawn too.
    born = draw(st.dates(datetime.date(2000, 1, 1), datetime.date(2000, 12, 31)))
    year = draw(st.integers(0, 99))
    individual = draw(st.integers(0, 999))
    number = f"{born.day + day_offset:02d}{born.month:02d}{year:02d}{individual:03d}"
    for weights in (_FNR_K1_WEIGHTS, _FNR_K2_WEIGHTS):
        number = _append_mod11_check(number, weights)
    return number


@st.composite
def _organisasjonsnummer(draw: st.DrawFn) -> str:
    return _append_mod11_check(_digits(draw, 8), _ORGNR_WEIGHTS)


def _append_mod11_check(digits: str, weights: Sequence[int]) -> str:
    checks = [c for c in range(10) if _weighted_sum(f"{digits}{c}", weights) % 11 == 0]
    # Where the check would have to be 10 no such number is issued: drop the candidate.
    assume(checks)
    return f"{digits}{checks[0]}"


def _weighted_sum(digits: str, weights: Sequence[int]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True))


@st.composite
def _hsa_id(draw: st.DrawFn) -> str:
    organisation = _digits(draw, draw(st.sampled_from([10, 12])))
    longest_suffix = 31 - len("SE-") - len(organisation)
    suffix = draw(st.text(_HSA_SUFFIX_CHARACTERS, min_size=1, max_size=longest_suffix))
    return f"SE{organisation}-{suffix}"
