"""National identifiers: known examples, generated valid numbers and their one-digit mutations."""

from __future__ import annotations

import pickle
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_service.contract.identifiers import (
    IdentifierKind,
    InvalidIdentifierError,
    is_valid,
    normalize,
)
from tests.strategies import identifiers as strategies

K = IdentifierKind

# Check digits of the Norwegian examples were computed by hand with the published weights;
# 01010112345, often quoted as a test fødselsnummer, fails the first check (it computes to 7).
VALID = [
    # Skatteverket's well-known test personnummer, with and without the hyphen.
    (K.PERSONNUMMER, "19121212-1212", "191212121212"),
    (K.PERSONNUMMER, "191212121212", "191212121212"),
    (K.PERSONNUMMER, " 191212121212\n", "191212121212"),
    (K.PERSONNUMMER, "20000229-0005", "200002290005"),
    (K.SAMORDNINGSNUMMER, "197010632391", "197010632391"),
    (K.SAMORDNINGSNUMMER, "19701063-2391", "197010632391"),
    (K.HSA_ID, "SE2321000016-1003", "SE2321000016-1003"),
    (K.HSA_ID, "se2321000016-abc1", "SE2321000016-ABC1"),
    (K.HSA_ID, "SE162321000255-O11111", "SE162321000255-O11111"),
    (K.HSA_ID, "SE162321000255-" + "A" * 16, "SE162321000255-" + "A" * 16),
    (K.FODSELSNUMMER, "01010112377", "01010112377"),
    (K.FODSELSNUMMER, "15019912385", "15019912385"),
    # 29 February 1901 never happened; the year is not checked.
    (K.FODSELSNUMMER, "29020112482", "29020112482"),
    (K.D_NUMMER, "41010112360", "41010112360"),
    (K.D_NUMMER, " 45010112307 ", "45010112307"),
    (K.HPR_NUMMER, "1234", "1234"),
    (K.HPR_NUMMER, " 012345678 ", "012345678"),
    (K.ORGANISASJONSNUMMER, "974760673", "974760673"),
]

INVALID = [
    (K.PERSONNUMMER, "191212121213", "check digit is 3, expected 2"),
    (K.PERSONNUMMER, "1212121212", "use the 12-digit form YYYYMMDDNNNN"),
    (K.PERSONNUMMER, "121212-1212", "use the 12-digit form YYYYMMDDNNNN"),
    (K.PERSONNUMMER, "121212+1212", "use the 12-digit form YYYYMMDDNNNN"),
    (K.PERSONNUMMER, "19121312-1212", "19121312 is not a calendar date"),
    (K.PERSONNUMMER, "19100230-1212", "19100230 is not a calendar date"),
    (K.PERSONNUMMER, "19000229-1212", "19000229 is not a calendar date"),
    (K.PERSONNUMMER, "19121200-1212", "19121200 is not a calendar date"),
    (K.PERSONNUMMER, "197010632391", "makes it a samordningsnummer"),
    (K.PERSONNUMMER, "1912121-21212", "expected 12 digits YYYYMMDDNNNN"),
    (K.PERSONNUMMER, "19121212 1212", "expected 12 digits YYYYMMDDNNNN"),
    (K.PERSONNUMMER, "1912121212123", "expected 12 digits YYYYMMDDNNNN"),
    (K.PERSONNUMMER, "19121212", "expected 12 digits YYYYMMDDNNNN"),
    (K.PERSONNUMMER, "19121212-", "expected 12 digits YYYYMMDDNNNN"),
    # Arabic-Indic digits for 191212121212: int() would read them, the format must not.
    (K.PERSONNUMMER, "١٩١٢١٢١٢١٢١٢", "expected 12 digits YYYYMMDDNNNN"),
    (K.PERSONNUMMER, "", "is empty"),
    (K.PERSONNUMMER, " \t ", "is empty"),
    (K.SAMORDNINGSNUMMER, "191212121212", "makes it a personnummer"),
    (K.SAMORDNINGSNUMMER, "197010632392", "check digit is 2, expected 1"),
    (K.SAMORDNINGSNUMMER, "197002892391", "19700289 is not a calendar date once 60 is taken"),
    (K.SAMORDNINGSNUMMER, "7010632391", "use the 12-digit form YYYYMMDDNNNN"),
    (K.HSA_ID, "SE232100001-1003", "expected SE, a 10- or 12-digit organisation number"),
    (K.HSA_ID, "SE2321000016-", "expected SE"),
    (K.HSA_ID, "SE2321000016-10 3", "expected SE"),
    (K.HSA_ID, "SE2321000016_1003", "expected SE"),
    (K.HSA_ID, "NO2321000016-1003", "expected SE"),
    (K.HSA_ID, "SE2321000016-" + "A" * 20, "expected SE"),
    (K.HSA_ID, "SE162321000255-" + "A" * 17, "is 32 characters long, at most 31 allowed"),
    # Upper-casing would turn these into valid ASCII (ß -> SS, Kelvin sign matches k).
    (K.HSA_ID, "SE2321000016-1003ß", "expected SE"),
    (K.HSA_ID, "SE2321000016-\u212a1", "expected SE"),
    (K.HSA_ID, "", "is empty"),
    (K.FODSELSNUMMER, "01010112345", "first check digit is 4, expected 7"),
    (K.FODSELSNUMMER, "01010112378", "second check digit is 8, expected 7"),
    (K.FODSELSNUMMER, "01019001200", "first check digit computes to 10"),
    (K.FODSELSNUMMER, "01019000750", "second check digit computes to 10"),
    (K.FODSELSNUMMER, "32010112377", "3201 is not a valid day and month"),
    (K.FODSELSNUMMER, "30020112377", "3002 is not a valid day and month"),
    (K.FODSELSNUMMER, "01130112377", "0113 is not a valid day and month"),
    (K.FODSELSNUMMER, "00010112377", "0001 is not a valid day and month"),
    (K.FODSELSNUMMER, "41010112360", "makes it a d-nummer"),
    (K.FODSELSNUMMER, "0101011237", "expected 11 digits DDMMYYIIIKK"),
    (K.FODSELSNUMMER, "010101-12377", "expected 11 digits DDMMYYIIIKK"),
    (K.D_NUMMER, "01010112377", "makes it a fodselsnummer"),
    (K.D_NUMMER, "41010112361", "second check digit is 1, expected 0"),
    (K.D_NUMMER, "72010112377", "7201 is not a valid day and month once 40 is taken"),
    (K.HPR_NUMMER, "123", "expected 4 to 9 digits"),
    (K.HPR_NUMMER, "1234567890", "expected 4 to 9 digits"),
    (K.HPR_NUMMER, "12a4", "expected 4 to 9 digits"),
    (K.HPR_NUMMER, "", "is empty"),
    (K.ORGANISASJONSNUMMER, "974760672", "check digit is 2, expected 3"),
    (K.ORGANISASJONSNUMMER, "974760070", "check digit computes to 10"),
    (K.ORGANISASJONSNUMMER, "97476067", "expected 9 digits"),
    (K.ORGANISASJONSNUMMER, "974 760 673", "expected 9 digits"),
]

# int() reads these as 0-9, so only the format check keeps them out.
FULLWIDTH_DIGITS = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))

LUHN_OR_MOD11_KINDS = {
    K.PERSONNUMMER: strategies.personnummer(),
    K.SAMORDNINGSNUMMER: strategies.samordningsnummer(),
    K.FODSELSNUMMER: strategies.fodselsnummer(),
    K.D_NUMMER: strategies.d_nummer(),
    K.ORGANISASJONSNUMMER: strategies.organisasjonsnummer(),
}
ALL_KINDS = {
    **LUHN_OR_MOD11_KINDS,
    K.HSA_ID: strategies.hsa_id(),
    K.HPR_NUMMER: strategies.hpr_nummer(),
}


@pytest.mark.parametrize(("kind", "value", "canonical"), VALID)
def test_valid_examples_normalize_to_their_canonical_form(
    kind: IdentifierKind, value: str, canonical: str
) -> None:
    assert normalize(kind, value) == canonical
    assert is_valid(kind, value)


@pytest.mark.parametrize(("kind", "value", "reason"), INVALID)
def test_invalid_examples_are_rejected_with_a_reason(
    kind: IdentifierKind, value: str, reason: str
) -> None:
    with pytest.raises(InvalidIdentifierError) as caught:
        normalize(kind, value)

    assert caught.value.kind is kind
    assert caught.value.value == value
    assert reason in caught.value.reason
    assert not is_valid(kind, value)


@pytest.mark.parametrize(("kind", "value", "canonical"), VALID)
def test_digits_of_other_scripts_are_refused(
    kind: IdentifierKind, value: str, canonical: str
) -> None:
    fullwidth = value.translate(FULLWIDTH_DIGITS)

    assert fullwidth != value
    assert not is_valid(kind, fullwidth)


def test_the_message_names_the_kind_the_value_and_the_reason() -> None:
    with pytest.raises(InvalidIdentifierError) as caught:
        normalize(K.PERSONNUMMER, "191212121213")

    assert str(caught.value) == "invalid personnummer '191212121213': check digit is 3, expected 2"
    assert isinstance(caught.value, ValueError)


def test_the_message_escapes_control_characters_in_the_value() -> None:
    with pytest.raises(InvalidIdentifierError) as caught:
        normalize(K.HPR_NUMMER, "12\n34x")

    assert "\n" not in str(caught.value)
    assert str(caught.value) == "invalid hpr-nummer '12\\n34x': expected 4 to 9 digits"


def test_the_error_survives_pickling() -> None:
    with pytest.raises(InvalidIdentifierError) as caught:
        normalize(K.ORGANISASJONSNUMMER, "974760672")

    copy = pickle.loads(pickle.dumps(caught.value))

    assert (copy.kind, copy.value, copy.reason) == (
        caught.value.kind,
        caught.value.value,
        caught.value.reason,
    )
    assert str(copy) == str(caught.value)


def test_a_plain_string_kind_is_understood_and_an_unknown_one_refused() -> None:
    # Callers outside mypy's reach (JSON, settings) may hand over the enum's value as a string.
    assert normalize(cast(K, "personnummer"), "191212121212") == "191212121212"
    with pytest.raises(ValueError, match="not a valid IdentifierKind"):
        normalize(cast(K, "passport"), "123")


@pytest.mark.parametrize("kind", list(ALL_KINDS))
@given(data=st.data())
def test_generated_valid_identifiers_normalize_to_themselves(
    kind: IdentifierKind, data: st.DataObject
) -> None:
    value = data.draw(ALL_KINDS[kind])

    assert normalize(kind, value) == value
    assert normalize(kind, f"  {value}\t") == value


@given(value=strategies.personnummer() | strategies.samordningsnummer())
def test_the_hyphenated_swedish_form_normalizes_to_the_twelve_digits(value: str) -> None:
    kind = K.PERSONNUMMER if int(value[6:8]) <= 31 else K.SAMORDNINGSNUMMER

    assert normalize(kind, f"{value[:8]}-{value[8:]}") == value
    assert not is_valid(kind, value[2:])


@pytest.mark.parametrize("kind", list(LUHN_OR_MOD11_KINDS))
@given(data=st.data(), change=st.integers(1, 9))
def test_changing_the_check_digit_makes_the_identifier_invalid(
    kind: IdentifierKind, data: st.DataObject, change: int
) -> None:
    value = data.draw(LUHN_OR_MOD11_KINDS[kind])
    mutated = value[:-1] + str((int(value[-1]) + change) % 10)

    with pytest.raises(InvalidIdentifierError, match="check digit"):
        normalize(kind, mutated)


@given(value=strategies.hsa_id())
def test_hsa_ids_are_case_insensitive(value: str) -> None:
    assert normalize(K.HSA_ID, value.lower()) == value


@pytest.mark.parametrize(
    ("first", "second"),
    [(K.PERSONNUMMER, K.SAMORDNINGSNUMMER), (K.FODSELSNUMMER, K.D_NUMMER)],
)
@given(data=st.data())
def test_sibling_kinds_never_accept_the_same_value(
    first: IdentifierKind, second: IdentifierKind, data: st.DataObject
) -> None:
    value = data.draw(ALL_KINDS[first] | ALL_KINDS[second])

    assert is_valid(first, value) != is_valid(second, value)


@pytest.mark.parametrize("kind", list(K))
@given(text=st.text())
def test_any_text_is_either_normalized_idempotently_or_rejected(
    kind: IdentifierKind, text: str
) -> None:
    try:
        canonical = normalize(kind, text)
    except InvalidIdentifierError:
        return
    assert normalize(kind, canonical) == canonical
