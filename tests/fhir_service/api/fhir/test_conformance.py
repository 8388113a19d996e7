"""Every canonical the service writes resolves at its own FHIR base, without a token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_service.contract import Contract
from fhir_service.mapping import urls
from fhir_service.mapping.to_fhir import contract_to_bundle

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
# Canonicals of ours: profiles and extensions, code systems and value sets.
CANONICAL = re.compile(
    rf"{re.escape(urls.BASE)}/(StructureDefinition|CodeSystem|ValueSet|SearchParameter|"
    r"OperationDefinition|ConceptMap)/[A-Za-z0-9\-.]+"
)


def _canonicals(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_canonicals(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_canonicals(v) for v in value)) if value else set()
    if isinstance(value, str) and CANONICAL.fullmatch(value):
        return {value}
    return set()


def test_a_profile_is_read_by_id_without_a_token(service: TestClient) -> None:
    read = service.get("/fhir/StructureDefinition/patient-contract-careplan")

    assert read.status_code == 200, read.text
    assert read.headers["content-type"].startswith("application/fhir+json")
    assert read.json()["url"] == f"{urls.BASE}/StructureDefinition/patient-contract-careplan"


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_every_canonical_a_contract_names_is_found_by_its_url(
    service: TestClient, example: Path
) -> None:
    contract = Contract.model_validate_json(example.read_text("utf-8"))
    named = _canonicals(contract_to_bundle(contract))
    assert named, "the Bundle names canonicals of ours"

    for canonical in sorted(named):
        kind = canonical.removeprefix(f"{urls.BASE}/").split("/")[0]
        found = service.get(f"/fhir/{kind}", params={"url": canonical})
        assert found.status_code == 200, found.text
        assert found.json()["total"] == 1, canonical
        [entry] = found.json()["entry"]
        assert entry["resource"]["url"] == canonical
        # and read by the id its fullUrl names
        assert service.get("/fhir" + entry["fullUrl"].split("/fhir", 1)[1]).is_success


def test_what_is_not_here_is_404_and_other_search_parameters_400(service: TestClient) -> None:
    missing = service.get("/fhir/ValueSet/no-such-value-set")
    asked_otherwise = service.get("/fhir/CodeSystem", params={"name": "ContractStatus"})
    everything = service.get("/fhir/SearchParameter")

    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    assert asked_otherwise.status_code == 400
    assert "not name" in asked_otherwise.json()["issue"][0]["diagnostics"]
    codes = {e["resource"]["code"] for e in everything.json()["entry"]}
    assert {"responsible-unit", "contract-record", "contract-status"} <= codes
