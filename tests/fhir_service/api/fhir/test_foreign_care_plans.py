"""Care plans other EHRs wrote (``tests/data/foreign/``, sources in its README) sent to
``POST /fhir`` and ``Bundle/$validate`` against the real HAPI.

Each gets a precise answer: taken (201), or refused with every problem at its element in one
OperationOutcome, the same from ``$validate``, in FHIR's words and never Python's, and with
nothing of it written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.auth import TestIssuer
from tests.support import PYTHON_WORDS

FOREIGN = Path(__file__).parents[3] / "data" / "foreign"
MANIFEST: list[dict[str, Any]] = json.loads((FOREIGN / "manifest.json").read_text("utf-8"))
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def ehr(issuer: TestIssuer) -> dict[str, str]:
    return {**issuer.headers("ehr", organization="hsa-id|SE2321000065-1254"), **FHIR_JSON}


def _patients_stored(hapi: str, bundle: dict[str, Any]) -> dict[str, int]:
    """How many Patients HAPI holds with each identifier of the Bundle's patients."""
    counts = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Patient":
            continue
        for identifier in resource.get("identifier", []):
            token = f"{identifier.get('system', '')}|{identifier['value']}".lstrip("|")
            found = httpx.get(f"{hapi}/Patient", params={"identifier": token, "_summary": "count"})
            counts[token] = found.json()["total"]
    return counts


def test_the_corpus_holds_a_dozen_one_plan_bundles_from_three_sources() -> None:
    sources = {entry["source"] for entry in MANIFEST}
    assert len(MANIFEST) >= 12
    assert len(sources) >= 3
    for entry in MANIFEST:
        bundle = json.loads((FOREIGN / entry["file"]).read_text("utf-8"))
        kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert (bundle["type"], kinds.count("CarePlan")) == ("transaction", 1), entry["file"]
        assert entry["source"] in (FOREIGN / "README.md").read_text("utf-8")


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_a_foreign_care_plan_is_taken_or_refused_precisely_with_nothing_half_written(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str, entry: dict[str, Any]
) -> None:
    body = (FOREIGN / entry["file"]).read_text("utf-8")
    bundle = json.loads(body)
    before = _patients_stored(conformance_loaded, bundle)

    checked = service.post("/fhir/Bundle/$validate", content=body, headers=ehr)
    sent = service.post("/fhir", content=body, headers=ehr)

    assert sent.status_code in (201, 422), sent.text
    outcome = checked.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if sent.status_code == 201:
        assert checked.status_code == 200, checked.text
        return
    assert (checked.status_code, outcome) == (422, sent.json())
    for issue in outcome["issue"]:
        assert issue["severity"] == "error", issue
        assert issue["expression"][0].startswith("Bundle"), issue
        assert not PYTHON_WORDS.search(issue["diagnostics"]), issue
    assert _patients_stored(conformance_loaded, bundle) == before
