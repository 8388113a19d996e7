"""Every Bundle the mapping produces validates in HAPI, against base R4 and our profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from fhir_service.contract import Contract
from fhir_service.mapping import urls
from fhir_service.mapping.to_fhir import contract_to_bundle
from tests.strategies.contracts import contracts

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"


def _validate(fhir: httpx.Client, bundle: dict[str, Any]) -> list[str]:
    response = fhir.post("/Bundle/$validate", json=bundle)
    assert response.status_code == 200, response.text
    return [
        f"{issue.get('location')}: {issue.get('diagnostics')}"
        for issue in response.json()["issue"]
        if issue["severity"] in ("error", "fatal")
    ]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_seed_scenario_bundle_has_no_errors(
    fhir: httpx.Client, conformance_loaded: str, example: Path
) -> None:
    contract = Contract.model_validate_json(example.read_text(encoding="utf-8"))

    assert _validate(fhir, contract_to_bundle(contract)) == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(contract=contracts())
def test_generated_contract_bundles_have_no_errors(
    fhir: httpx.Client, conformance_loaded: str, contract: Contract
) -> None:
    for language in ("sv", "nb", "en"):
        assert _validate(fhir, contract_to_bundle(contract, language)) == []


def test_profiles_are_applied_a_careplan_without_contract_status_fails(
    fhir: httpx.Client, conformance_loaded: str
) -> None:
    contract = Contract.model_validate_json((EXAMPLES / "knee-replacement.json").read_text())
    bundle = contract_to_bundle(contract)
    careplan = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    careplan["extension"] = [
        e for e in careplan["extension"] if e["url"] != urls.EXT_CONTRACT_STATUS
    ]

    errors = _validate(fhir, bundle)

    assert any("contractStatus" in error for error in errors), errors


def test_extension_definitions_are_enforced(fhir: httpx.Client, conformance_loaded: str) -> None:
    contract = Contract.model_validate_json((EXAMPLES / "knee-replacement.json").read_text())
    bundle = contract_to_bundle(contract)
    careplan = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    careplan["extension"][0]["valueCoding"]["code"] = "bogus"
    note_kind = careplan["note"][0]["extension"][0]
    careplan["note"][0]["extension"][0] = {"url": note_kind["url"], "valueString": "wish"}

    errors = " ".join(_validate(fhir, bundle))

    assert "contract-status#bogus" in errors
    assert "found type string" in errors
