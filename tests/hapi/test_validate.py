"""``$validate`` checks resources against the core R4 definitions, offline."""

from __future__ import annotations

import httpx

from tests.support import load_data


def test_careplan_without_status_is_rejected_with_an_error_outcome(fhir: httpx.Client) -> None:
    response = fhir.post("/CarePlan/$validate", json=load_data("hapi/careplan-missing-status.json"))

    # HAPI 8.8 answers 200 and puts the verdict in the OperationOutcome, as the spec allows.
    assert response.status_code == 200
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    errors = [issue for issue in outcome["issue"] if issue["severity"] == "error"]
    assert any("CarePlan.status" in issue["diagnostics"] for issue in errors)


def test_valid_careplan_passes(fhir: httpx.Client) -> None:
    response = fhir.post("/CarePlan/$validate", json=load_data("hapi/careplan-valid.json"))

    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert not [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]
