"""The names of codes: every code of every table in sv, nb and en, and exactly the codes used."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from fhir_service.api.labels import label_tables, labels, labels_used_by
from fhir_service.contract import (
    ActivityOwner,
    CareContactKind,
    Contract,
    ContractStatus,
    OrganizationKind,
    Schedule,
)
from fhir_service.contract.plan import CoherentPlan, coherent_plan
from fhir_service.mapping.tables import Language

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "profiles" / "examples" / "contracts"
LANGUAGES: tuple[Language, ...] = get_args(Language)
# Between the stroke example's two booked times, while its care contact's period runs.
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
AGREED = {"sv": "Överenskommet", "nb": "Avtalt", "en": "Agreed"}


def _example(name: str) -> Contract:
    return Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text("utf-8"))


def _plan() -> CoherentPlan:
    stroke = _example("stroke-rehabilitation")
    knee = _example("knee-replacement").model_copy(update={"patient": stroke.patient})
    return coherent_plan(stroke.patient.identifier, [stroke, knee], now=NOW, withheld=False)


def _codes_of(plan: CoherentPlan) -> dict[str, set[str]]:
    """Every code ``plan`` holds, by table, gathered field by field."""
    activities = [a for group in plan.activities for a in group.activities]
    professionals = [
        *(c.responsible_clinician for c in plan.contracts),
        *(c.professional for c in plan.care_contacts),
        *(t.professional for t in plan.upcoming_times if t.professional),
    ]
    organizations = [
        *(p.organization for p in professionals),
        *(a.organization for a in activities if a.organization),
        *(t.organization for t in plan.upcoming_times),
    ]
    codes: dict[str, set[str]] = {
        "contract-status": {c.status for c in plan.contracts},
        "activity-owner": {g.owner for g in plan.activities} | {a.owner for a in activities},
        "activity-category": {a.category for a in activities},
        "schedule-unit": {a.schedule.unit for a in activities if a.schedule},
        "care-team-role": {p.role for p in professionals} | {c.kind for c in plan.care_contacts},
        "organization-kind": {o.kind for o in organizations},
    }
    return {table: found for table, found in codes.items() if found}


def test_the_tables_are_every_code_system_plus_relationships_and_schedule_units() -> None:
    code_systems = {path.stem for path in (ROOT / "mappings" / "codesystems").glob("*.json")}

    assert set(label_tables()) == code_systems | {"relationship", "schedule-unit"}


COMMON_RELATIONSHIPS = {"SPS", "DOMPART", "CHILD", "PRN", "SIB", "GRPRN", "FRND", "NBOR", "FAMMEMB"}


@pytest.mark.parametrize("table", sorted(label_tables()))
def test_every_code_of_every_table_has_a_name_in_swedish_norwegian_and_english(
    table: str,
) -> None:
    names = label_tables()[table].names

    assert names
    for code, by_language in names.items():
        # HL7's less common relationships (adopted son, grand-niece, ...) have English names
        # only, and are shown in English; every other code has all three.
        common = table != "relationship" or code in COMMON_RELATIONSHIPS
        for language in LANGUAGES if common else ("en",):
            assert by_language.get(language, "").strip(), f"{table} {code} {language}"
    for language in LANGUAGES:
        for code in names:
            assert label_tables()[table].display(code, language).strip(), (table, code)


@pytest.mark.parametrize(
    ("table", "codes"),
    [
        ("contract-status", [s.value for s in ContractStatus]),
        ("activity-owner", [o.value for o in ActivityOwner]),
        ("organization-kind", [k.value for k in OrganizationKind]),
        ("care-team-role", [k.value for k in CareContactKind]),
        ("schedule-unit", list(get_args(Schedule.model_fields["unit"].annotation))),
    ],
)
def test_every_code_a_contract_can_hold_in_a_closed_vocabulary_has_a_name(
    table: str, codes: list[str]
) -> None:
    assert set(codes) <= set(label_tables()[table].names)


@pytest.mark.parametrize("language", LANGUAGES)
def test_all_labels_are_every_table_s_codes_in_the_language_asked(language: Language) -> None:
    named = labels(language)

    assert set(named) == set(label_tables())
    for table, codes in named.items():
        assert codes == {
            c: n.get(language, n["en"]) for c, n in label_tables()[table].names.items()
        }
    assert named["contract-status"]["agreed"] == AGREED[language]


def test_labels_of_some_tables_hold_those_tables_only() -> None:
    assert set(labels("nb", tables=["schedule-unit", "relationship"])) == {
        "schedule-unit",
        "relationship",
    }
    assert labels("nb", tables=["schedule-unit"])["schedule-unit"]["wk"] == "uke"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_labels_of_a_plan_hold_exactly_its_codes(language: Language) -> None:
    plan = _plan()

    named = labels_used_by([plan], language)

    assert {table: set(codes) for table, codes in named.items()} == _codes_of(plan)
    for table, codes in named.items():
        for code, name in codes.items():
            assert name == label_tables()[table].names[code][language]


def test_the_labels_of_contracts_name_their_relatives_relationships() -> None:
    contract = _example("elderly-psychiatry")

    named = labels_used_by([contract], "sv")

    assert set(named["relationship"]) == {r.relationship for r in contract.relatives}
    assert named["contract-status"] == {contract.status.value: "Utkast"}
    assert set(named["activity-owner"]) == {a.owner.value for a in contract.activities}


def test_a_code_no_table_knows_is_left_unnamed_and_the_rest_named() -> None:
    contract = _example("knee-replacement")
    first = contract.activities[0].model_copy(update={"category": "made-up"})
    changed = contract.model_copy(update={"activities": (first, *contract.activities[1:])})

    named = labels_used_by([changed], "en")

    assert "made-up" not in named["activity-category"]
    assert set(named["activity-category"]) == {a.category for a in contract.activities[1:]}


def test_the_labels_of_nothing_are_empty() -> None:
    assert labels_used_by([], "sv") == {}
