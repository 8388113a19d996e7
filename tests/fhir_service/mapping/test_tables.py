"""Reading another EHR's care team roles as ours (``mapping/tables.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_service.mapping.tables import care_team_role_of

OURS = "http://fhir.patient-contracts.org/CodeSystem/care-team-role"
SNOMED = "http://snomed.info/sct"


@pytest.mark.parametrize(
    ("concept", "role"),
    [
        ({"coding": [{"system": OURS, "code": "personlig-koordinator"}]}, "personlig-koordinator"),
        ({"coding": [{"system": SNOMED, "code": "106292003"}]}, "nurse"),
        (
            {"coding": [{"system": SNOMED, "code": "36682004"}], "text": "Sjukgymnast"},
            "physiotherapist",
        ),
        ({"text": "Fast vårdkontakt"}, "fast-vardkontakt"),
        ({"text": " fast kontakt "}, "fast-vardkontakt"),
        ({"text": "Personal coordinator"}, "personlig-koordinator"),
        (
            {"coding": [{"system": "urn:oid:9.9", "code": "x", "display": "Kurator"}]},
            "social-worker",
        ),
        ({"coding": [{"system": SNOMED, "code": "224535009"}], "text": "Registered nurse"}, None),
        ({"text": "Vaktmästare"}, None),
        ({"coding": 7, "text": ["Fast vårdkontakt"]}, None),
        ("Fast vårdkontakt", None),
        (None, None),
    ],
)
def test_a_role_is_ours_by_coding_by_the_concept_map_or_by_its_name(
    concept: Any, role: str | None
) -> None:
    assert care_team_role_of(concept) == role
