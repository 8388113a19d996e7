"""Care plans other EHRs wrote (``tests/data/foreign/``, sources in its README) sent to
``POST /fhir`` and ``Bundle/$validate`` against the real HAPI.

Each gets a precise answer: taken (200, a transaction-response) and read back with every
element it sent, or, for the
few the manifest says are refused and why (``refused_for``), refused with every problem at its
element in one OperationOutcome, the same from ``$validate``, in FHIR's words and never
Python's, and with nothing of it written.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.support import PYTHON_WORDS, bundle_names, contract_written, losses, named, read_back

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


def _sent_records(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [named(e["resource"], bundle_names(bundle)) for e in bundle["entry"]]


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

    outcome = checked.json()
    assert outcome["resourceType"] == "OperationOutcome"
    reasons = tuple(entry.get("refused_for", ()))
    if not reasons:
        assert (sent.status_code, checked.status_code) == (200, 200), sent.text
        contract_id = contract_written(service, ehr, sent)
        stored = read_back(service, ehr, conformance_loaded, contract_id)
        assert losses(_sent_records(bundle), stored) == {}
        return
    assert (sent.status_code, checked.status_code) == (422, 422), sent.text
    assert outcome == sent.json()
    said = [issue["diagnostics"] for issue in outcome["issue"]]
    for issue in outcome["issue"]:
        assert issue["severity"] == "error", issue
        assert issue["expression"][0].startswith("Bundle"), issue
        assert not PYTHON_WORDS.search(issue["diagnostics"]), issue
        assert issue["diagnostics"].startswith(reasons), issue
    # Every reason the manifest gives is said, all in one answer.
    assert all(any(d.startswith(reason) for d in said) for reason in reasons), said
    assert _patients_stored(conformance_loaded, bundle) == before


def test_most_of_the_corpus_is_taken_and_every_refusal_is_explained() -> None:
    refused = [e for e in MANIFEST if e.get("refused_for")]
    assert len(MANIFEST) - len(refused) >= 11
    # Of the valid R4 plans, only the specification's two inconsistent examples: GPVisit's
    # Encounter is another patient's, f201 is a proposal whose encounter is not in the source.
    valid = {e["file"] for e in refused if e["valid_r4"]}
    assert valid == {"fhir-r4-spec/gpvisit.json", "fhir-r4-spec/f201-renal.json"}


def test_a_plan_in_force_elsewhere_is_the_calling_units_agreed_as_its_system_attests(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str
) -> None:
    # Synthea's plan names no clinician of ours and no agreement: it is in force (active).
    body = (FOREIGN / "synthea" / "diabetes-self-management.json").read_text("utf-8")
    posted = datetime.now(UTC)

    sent = service.post("/fhir", content=body, headers=ehr)

    assert sent.status_code == 200, sent.text
    contract_id = contract_written(service, ehr, sent)
    read = service.get(f"/contracts/{contract_id}", headers=ehr).json()
    assert read["status"] == "agreed"
    assert read["responsible_clinician"] is None
    assert read["responsible_unit"]["identifier"] == {
        "kind": "hsa-id",
        "value": "SE2321000065-1254",
    }
    assert sorted((a["party"], a["attested"]) for a in read["agreements"]) == [
        ("patient", True),
        ("responsible-clinician", True),
    ]
    # It says no date of its own (CarePlan.created): attested when it arrived.
    [agreed_at] = {datetime.fromisoformat(a["agreed_at"]) for a in read["agreements"]}
    assert posted <= agreed_at <= datetime.now(UTC)
    # The Provenance says the unit's system signed for both parties, not the parties.
    found = httpx.get(
        f"{conformance_loaded}/Provenance",
        params=[
            ("target-identifier", f"{urls.ID_CONTRACT_VERSION}|{contract_id}/_history/1"),
        ],
    ).json()
    [provenance] = [e["resource"] for e in found["entry"]]
    assert provenance["meta"]["tag"][0]["system"] == urls.TAG_AGREEMENT
    assert provenance["policy"] == [urls.POLICY_AGREEMENT_ATTESTED]
    signatures = provenance["signature"]
    assert {s["type"][0]["code"] for s in signatures} == {"1.2.840.10065.1.12.1.5"}
    assert {s["who"]["reference"].split("/")[0] for s in signatures} == {"Organization"}
    assert {s["onBehalfOf"]["reference"].split("/")[0] for s in signatures} == {
        "Patient",
        "Organization",
    }


@pytest.mark.parametrize("file", [e["file"] for e in MANIFEST if not e.get("refused_for")])
def test_a_foreign_plan_read_again_shows_its_patient_as_another_system_changed_them(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str, file: str
) -> None:
    sent = service.post("/fhir", content=(FOREIGN / file).read_text("utf-8"), headers=ehr)
    assert sent.status_code == 200, sent.text
    contract_id = contract_written(service, ehr, sent)
    first = service.get(f"/contracts/{contract_id}", headers=ehr)
    again = service.get(f"/contracts/{contract_id}", headers=ehr)
    assert first.status_code == 200, first.text
    assert again.json() == first.json()
    params = [("identifier", f"{urls.ID_CONTRACT}|{contract_id}"), ("_include", "CarePlan:subject")]
    found = httpx.get(f"{conformance_loaded}/CarePlan", params=params).json()
    [patient] = [
        e["resource"] for e in found["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    # Straight in HAPI, as another system would: the contract's CarePlan keeps its version.
    family = f"Changed-{uuid.uuid4().hex[:8]}"
    patient["name"] = [{"family": family, "given": ["Elsewhere"]}]
    put = httpx.put(f"{conformance_loaded}/Patient/{patient['id']}", json=patient)
    assert put.status_code == 200, put.text

    read = service.get(f"/contracts/{contract_id}", headers=ehr).json()

    assert read["version"] == first.json()["version"]
    assert family in json.dumps(read["patient"])
    assert family not in json.dumps(first.json()["patient"])
