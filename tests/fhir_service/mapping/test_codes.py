"""Codes a contract names that our tables, its units or the care guarantee do not know."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import Contract
from fhir_service.mapping.codes import unknown_codes

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"


def _with_case(**case: Any) -> Contract:
    data = json.loads((EXAMPLES / "norwegian-individual-plan.json").read_text("utf-8"))
    data["care_guarantee"] = {"since": "2031-01-06T08:00:00+01:00", **case}
    return Contract.model_validate(data)


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ({"jurisdiction": "NO", "step": "treatment-start", "deadline": "2031-03-01"}, None),
        ({"jurisdiction": "NO", "step": "treatment-start"}, "is set per case"),
        ({"jurisdiction": "SE", "step": "treatment"}, None),
        ({"jurisdiction": "SE", "step": "treatment", "deadline": "2031-03-01"}, "leave it out"),
        ({"jurisdiction": "SE", "step": "treatment-start"}, "unknown care-guarantee step"),
    ],
)
def test_a_care_guarantee_case_names_a_known_step_and_a_deadline_only_where_set_per_case(
    case: dict[str, Any], problem: str | None
) -> None:
    found = [message for _, message in unknown_codes(_with_case(**case))]

    assert found == [] if problem is None else any(problem in m for m in found)
