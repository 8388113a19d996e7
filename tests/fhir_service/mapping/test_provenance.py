"""Agreements and signatures as stored stay found: their tags and digests never change
(``tests/data/agreements/``: what the service wrote for two contracts, pinned)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import Contract
from fhir_service.contract.model import AgreementParty
from fhir_service.mapping import urls
from fhir_service.mapping.provenance import contents_digest
from fhir_service.mapping.to_fhir import contract_to_bundle

AGREEMENTS = Path(__file__).parents[2] / "data" / "agreements"
EXPECTED: dict[str, dict[str, Any]] = json.loads((AGREEMENTS / "expected.json").read_text())


def _contract(name: str) -> Contract:
    return Contract.model_validate_json((AGREEMENTS / name).read_text(encoding="utf-8"))


def _agreement(contract: Contract) -> dict[str, Any]:
    bundle = contract_to_bundle(contract, "sv", new=True)
    found = [
        entry["resource"]
        for entry in bundle["entry"]
        if any(
            t["system"] == urls.TAG_AGREEMENT
            for t in entry["resource"].get("meta", {}).get("tag", [])
        )
    ]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_agreement_is_written_with_the_tag_and_signatures_it_was_stored_with(
    name: str,
) -> None:
    agreement = _agreement(_contract(name))

    assert agreement["meta"]["tag"][0]["code"] == EXPECTED[name]["agreement"]
    assert sorted(s["data"] for s in agreement["signature"]) == EXPECTED[name]["signatures"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_party_agrees_to_the_contents_digest_it_was_stored_with(name: str) -> None:
    contract = _contract(name)

    digests = {str(party): contents_digest(contract, party) for party in AgreementParty}

    assert digests == {str(p): EXPECTED[name][str(p)] for p in AgreementParty}
