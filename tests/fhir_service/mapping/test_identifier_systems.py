"""Identifier systems come from mappings/identifier-systems.json and map back to their kinds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract.identifiers import IdentifierKind
from fhir_service.mapping.identifier_systems import _load, kind_for, system_for

K = IdentifierKind
TABLE = Path(__file__).resolve().parents[3] / "mappings" / "identifier-systems.json"

# Written out again here so that a slip in the JSON shows up as a failing test.
EXPECTED = {
    K.PERSONNUMMER: (
        "http://electronichealth.se/identifier/personnummer",
        "urn:oid:1.2.752.129.2.1.3.1",
    ),
    K.SAMORDNINGSNUMMER: (
        "http://electronichealth.se/identifier/samordningsnummer",
        "urn:oid:1.2.752.129.2.1.3.3",
    ),
    K.HSA_ID: ("urn:oid:1.2.752.29.4.19", "urn:oid:1.2.752.129.2.1.4.1"),
    K.FODSELSNUMMER: ("urn:oid:2.16.578.1.12.4.1.4.1", "http://hl7.no/fhir/NamingSystem/FNR"),
    K.D_NUMMER: ("urn:oid:2.16.578.1.12.4.1.4.2", "http://hl7.no/fhir/NamingSystem/DNR"),
    K.HPR_NUMMER: ("urn:oid:2.16.578.1.12.4.1.4.4", "http://hl7.no/fhir/NamingSystem/HPR"),
    K.ORGANISASJONSNUMMER: (
        "urn:oid:2.16.578.1.12.4.1.4.101",
        "http://hl7.no/fhir/NamingSystem/ENH",
    ),
}
COUNTRIES = {
    K.PERSONNUMMER: "SE",
    K.SAMORDNINGSNUMMER: "SE",
    K.HSA_ID: "SE",
    K.FODSELSNUMMER: "NO",
    K.D_NUMMER: "NO",
    K.HPR_NUMMER: "NO",
    K.ORGANISASJONSNUMMER: "NO",
}


def _raw_table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads(TABLE.read_text(encoding="utf-8"))
    return table


NATIONAL = [kind for kind in IdentifierKind if kind is not IdentifierKind.OTHER]


def test_every_national_kind_has_exactly_one_entry_in_the_table() -> None:
    # An identifier of kind other carries its own system: it has none in the table.
    assert set(_raw_table()) == {str(kind) for kind in NATIONAL}


@pytest.mark.parametrize("kind", NATIONAL)
def test_each_entry_has_emit_accept_country_and_description(kind: IdentifierKind) -> None:
    entry = _raw_table()[kind]

    assert entry["country"] == COUNTRIES[kind]
    assert isinstance(entry["description"], str)
    assert entry["description"].strip()
    assert entry["accept"] == [EXPECTED[kind][1]]


@pytest.mark.parametrize(("kind", "systems"), EXPECTED.items())
def test_the_emitted_system_is_the_agreed_one(
    kind: IdentifierKind, systems: tuple[str, str]
) -> None:
    assert system_for(kind) == systems[0]


@pytest.mark.parametrize(("kind", "systems"), EXPECTED.items())
def test_emitted_and_alias_systems_map_back_to_their_kind(
    kind: IdentifierKind, systems: tuple[str, str]
) -> None:
    emitted, alias = systems

    assert kind_for(emitted) is kind
    assert kind_for(alias) is kind
    assert kind_for(system_for(kind)) is kind


@pytest.mark.parametrize(
    "system",
    [
        "",
        "urn:oid:1.2.752.129.2.1.3",
        "http://electronichealth.se/identifier/personnummer/",
        " urn:oid:1.2.752.29.4.19",
        "https://electronichealth.se/identifier/personnummer",
        "personnummer",
    ],
)
def test_unknown_systems_have_no_kind(system: str) -> None:
    assert kind_for(system) is None


def _write(tmp_path: Path, table: dict[str, Any]) -> Path:
    path = tmp_path / "identifier-systems.json"
    path.write_text(json.dumps(table), encoding="utf-8")
    return path


def test_a_table_missing_a_kind_is_refused(tmp_path: Path) -> None:
    table = _raw_table()
    del table["hpr-nummer"]

    with pytest.raises(ValueError, match="kinds missing: hpr-nummer"):
        _load(_write(tmp_path, table))


def test_a_table_with_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    table = _raw_table()
    table["passport"] = table["hpr-nummer"]

    with pytest.raises(ValueError, match="unknown kinds: passport"):
        _load(_write(tmp_path, table))


def test_a_system_under_two_kinds_is_refused(tmp_path: Path) -> None:
    table = _raw_table()
    table["d-nummer"]["accept"] = ["http://hl7.no/fhir/NamingSystem/FNR"]

    listed_twice = (
        "'http://hl7.no/fhir/NamingSystem/FNR' is listed under fodselsnummer and d-nummer"
    )
    with pytest.raises(ValueError, match=re.escape(listed_twice)):
        _load(_write(tmp_path, table))


def test_a_malformed_entry_is_refused(tmp_path: Path) -> None:
    table = _raw_table()
    table["hsa-id"]["accept"] = "urn:oid:1.2.752.129.2.1.4.1"

    with pytest.raises(ValueError, match="hsa-id: expected 'emit' as a string"):
        _load(_write(tmp_path, table))
