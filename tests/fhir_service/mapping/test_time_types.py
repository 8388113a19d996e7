"""A care unit's time type as a FHIR HealthcareService, and back; the seed the tests load."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fhir_service.contract import Contract, own_language
from fhir_service.errors import UnprocessableError
from fhir_service.mapping import urls
from fhir_service.mapping.time_types import (
    DefinedTimeType,
    defined_time_type,
    step_problems,
    time_type_resource,
    unknown_time_types,
)
from tests.time_types import seed_catalogue

TYPES = seed_catalogue()
EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
RULES = f"HealthcareService.extension('{urls.EXT_TIME_TYPE_RULES}')"


def _defined() -> list[DefinedTimeType]:
    return [
        DefinedTimeType(unit.unit, unit.time_zone, kind)
        for unit in TYPES.units
        for kind in unit.time_types
    ]


def test_the_seed_names_every_type_in_swedish_norwegian_and_english_with_known_steps() -> None:
    assert len(TYPES) == 9
    for defined in _defined():
        ZoneInfo(defined.time_zone)
        assert set(defined.kind.names) == {"sv", "nb", "en"}
        assert defined.kind.duration > timedelta(0)
        assert step_problems(defined.unit, defined.kind, "$") == []


@pytest.mark.parametrize("defined", _defined(), ids=lambda d: d.identifier)
def test_a_time_type_reads_back_as_it_was_defined(defined: DefinedTimeType) -> None:
    language = own_language(defined.unit.identifier)
    resource = time_type_resource(defined, language)

    back = defined_time_type(resource, defined.unit.kind)

    assert resource["language"] == language
    assert resource["name"] == defined.kind.names[language]
    assert (back.unit, back.time_zone, back.kind) == (
        defined.unit,
        defined.time_zone,
        defined.kind,
    )
    assert resource["identifier"] == [{"system": urls.ID_TIME_TYPE, "value": defined.identifier}]


def test_a_retired_type_is_inactive_and_still_read() -> None:
    defined = _defined()[0]
    retired = defined.kind.model_copy(update={"active": False})
    resource = time_type_resource(DefinedTimeType(defined.unit, defined.time_zone, retired), "sv")

    assert resource["active"] is False
    assert defined_time_type(resource).kind.active is False


def test_every_problem_of_a_time_type_is_said_at_once_where_it_is() -> None:
    resource = time_type_resource(_defined()[0], "sv")
    broken = copy.deepcopy(resource)
    broken["language"] = "de"
    rules = broken["extension"][0]["extension"]
    broken["extension"][0]["extension"] = [
        r for r in rules if r["url"] not in ("minutes", "patientBook")
    ]
    for rule in broken["extension"][0]["extension"]:
        if rule["url"] == "timeZone":
            rule["valueCode"] = "Mars/Olympus_Mons"
    broken["providedBy"].pop("display")

    with pytest.raises(UnprocessableError) as refused:
        defined_time_type(broken)

    where = {e for i in refused.value.issues for e in i.get("expression", [])}
    assert where >= {
        "HealthcareService.language",
        "HealthcareService.providedBy.display",
        f"{RULES}.extension('minutes')",
        f"{RULES}.extension('patientBook')",
        f"{RULES}.extension('timeZone')",
    }


def test_a_step_the_units_country_does_not_have_is_refused_at_its_extension() -> None:
    defined = _defined()[0]
    stepped = defined.kind.model_copy(update={"care_guarantee_step": "treatment-start"})
    resource = time_type_resource(DefinedTimeType(defined.unit, defined.time_zone, stepped), "sv")

    with pytest.raises(UnprocessableError) as refused:
        defined_time_type(resource)

    assert refused.value.issues[0]["expression"] == [f"{RULES}.extension('careGuaranteeStep')"]
    assert "treatment-start" in refused.value.issues[0]["diagnostics"]


def test_a_contract_may_name_only_the_types_its_units_defined() -> None:
    contract = Contract.model_validate_json(
        (EXAMPLES / "elderly-psychiatry.json").read_text("utf-8")
    )
    named = contract.agreed_times[0]
    times = (
        named.model_copy(update={"time_type": "nurse-visit"}),
        named.model_copy(update={"key": "other", "time_type": "dance-class"}),
    )

    problems = unknown_time_types(contract.model_copy(update={"agreed_times": times}), TYPES)

    assert problems == [
        (
            "$.agreed_times[1].time_type",
            f"{named.organization.name} has no time type 'dance-class'",
        )
    ]


def test_a_wrong_language_and_a_wrong_value_are_said_together() -> None:
    resource = time_type_resource(_defined()[0], "sv")
    broken = copy.deepcopy(resource)
    broken["language"] = "de"
    for rule in broken["extension"][0]["extension"]:
        if rule["url"] == "cancelCutoff":
            rule["valueDuration"]["value"] = -1

    with pytest.raises(UnprocessableError) as refused:
        defined_time_type(broken)

    where = [e for i in refused.value.issues for e in i.get("expression", [])]
    assert "HealthcareService.language" in where
    assert f"{RULES}.extension('cancelCutoff')" in where
    assert len(where) == len(set(where))
