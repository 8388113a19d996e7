"""The clinics' time types as data: complete, named in every language, on a real clock."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from fhir_service.contract import Identifier, IdentifierKind
from fhir_service.mapping import urls
from fhir_service.mapping.tables import care_guarantee_steps
from fhir_service.mapping.time_types import (
    UnknownTimeTypeError,
    clinics,
    time_type,
    time_types,
    time_zone,
)

VAXJO = Identifier(kind=IdentifierKind.HSA_ID, value="SE2321000065-1254")


def test_every_time_type_is_named_in_swedish_norwegian_and_english() -> None:
    for unit in clinics().care_units:
        ZoneInfo(unit.time_zone)
        assert unit.time_types
        for kind in unit.time_types:
            assert set(kind.names) == {"sv", "nb", "en"}, kind.code
            assert all(name.strip() for name in kind.names.values())
            assert kind.duration > timedelta(0)


def test_care_guarantee_steps_named_by_time_types_exist() -> None:
    steps = set().union(*care_guarantee_steps().values())
    named = {k.care_guarantee_step for u in clinics().care_units for k in u.time_types}
    assert named - {None} <= steps


def test_the_time_type_system_is_the_one_the_mapping_writes() -> None:
    assert clinics().url == urls.CS_TIME_TYPE


def test_a_unit_has_its_own_time_types_and_rules() -> None:
    nurse = time_type(VAXJO, "nurse-visit")

    assert nurse.patient.book is True
    assert nurse.cancel_cutoff == timedelta(hours=24)
    assert time_type(VAXJO, "psychiatrist-followup").patient.book is False
    assert str(time_zone(VAXJO)) == "Europe/Stockholm"
    with pytest.raises(UnknownTimeTypeError, match="nurse-visit"):
        time_type(VAXJO, "x-ray")
    unknown_unit = Identifier(kind=IdentifierKind.HSA_ID, value="SE2321000065-9999")
    assert time_types(unknown_unit) == {}
