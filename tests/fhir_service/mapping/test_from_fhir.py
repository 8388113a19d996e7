"""Stored data the mapping cannot read is an UnreadableContractError, never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import Contract
from fhir_service.mapping.from_fhir import UnreadableContractError, contract_from_bundle
from fhir_service.mapping.to_fhir import contract_to_bundle

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"


def _bundle(name: str) -> tuple[Contract, dict[str, Any]]:
    contract = Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return contract, contract_to_bundle(contract)


def _careplan(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    return resource


def test_a_careplan_without_an_element_the_mapping_needs_is_unreadable() -> None:
    contract, bundle = _bundle("elderly-psychiatry")
    del _careplan(bundle)["title"]

    with pytest.raises(UnreadableContractError, match="lacks an element"):
        contract_from_bundle(bundle, contract.id)


def test_content_the_contract_model_refuses_is_unreadable_without_quoting_the_data() -> None:
    contract, bundle = _bundle("knee-replacement")
    # Another system's second agreement of the same version: twice agreed by each party.
    agreement = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
    bundle["entry"].append(
        {**agreement, "fullUrl": "urn:uuid:00000000-0000-0000-0000-0000000000aa"}
    )

    with pytest.raises(UnreadableContractError) as caught:
        contract_from_bundle(bundle, contract.id)

    assert "duplicate" in str(caught.value)
    assert contract.patient.identifier.value not in str(caught.value)
    assert contract.patient.name.family not in str(caught.value)
