"""Picking the reader's language from ``?lang=`` and Accept-Language: Swedish unless asked."""

from __future__ import annotations

import doctest

import pytest

from fhir_service.api import languages
from fhir_service.api.languages import language_headers, negotiated_language
from fhir_service.mapping.tables import Language


@pytest.mark.parametrize("accept_language", [None, "", "de-DE, fr;q=0.8", "*", " , ;q=1"])
def test_without_a_language_we_have_the_answer_is_swedish(accept_language: str | None) -> None:
    assert negotiated_language(None, accept_language) == "sv"


@pytest.mark.parametrize("tag", ["nb", "nn", "no", "nb-NO", "nn-NO", "no-NO", "NB"])
def test_every_norwegian_tag_gets_bokmal(tag: str) -> None:
    assert negotiated_language(None, f"de, {tag};q=0.9") == "nb"


@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [
        ("en;q=0.5, sv", "sv"),
        ("sv;q=0.2, en-GB;q=0.9, nb;q=0.3", "en"),
        ("de, en;q=0.1", "en"),
        ("en;Q=0.7, nb;q=0.6", "en"),
        ("sv;q=0.001, nb;q=0.01", "nb"),
    ],
)
def test_the_highest_weight_wins(accept_language: str, expected: Language) -> None:
    assert negotiated_language(None, accept_language) == expected


@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [("en;q=0.8, nb;q=0.8", "en"), ("nb;q=0.8, en;q=0.8", "nb"), ("nb, en, sv", "nb")],
)
def test_equal_weights_go_to_the_one_listed_first(accept_language: str, expected: Language) -> None:
    assert negotiated_language(None, accept_language) == expected


@pytest.mark.parametrize(
    "accept_language",
    ["en;q=0, nb;q=0.1", "en;q=x, nb;q=0.1", "en;q=1.5, nb;q=0.1", "en;q=0.1234, nb;q=0.1"],
)
def test_refused_and_malformed_weights_are_passed_over(accept_language: str) -> None:
    assert negotiated_language(None, accept_language) == "nb"


def test_other_parameters_do_not_hide_the_weight() -> None:
    assert negotiated_language(None, "en;level=1;q=0.2, nb;q=0.5") == "nb"


@pytest.mark.parametrize("asked", ["sv", "nb", "en"])
def test_lang_wins_over_accept_language(asked: Language) -> None:
    others = ", ".join(code for code in ("sv", "nb", "en") if code != asked)

    assert negotiated_language(asked, others) == asked


def test_the_headers_say_the_language_and_that_it_varies_with_accept_language() -> None:
    assert language_headers("nb") == {"Content-Language": "nb", "Vary": "Accept-Language"}
    assert language_headers("en", vary=("Accept",))["Vary"] == "Accept, Accept-Language"


def test_the_module_doctests_pass() -> None:
    result = doctest.testmod(languages)

    assert result.attempted > 0
    assert result.failed == 0
