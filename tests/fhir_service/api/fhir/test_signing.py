"""``CarePlan/{id}/$propose``, ``$sign``, ``$progress`` and ``$proposal`` driven by ``fhirpy``,
a client nobody here wrote.

The service runs as a process against the real HAPI. The unit's EHR puts a draft to the patient
through the FHIR endpoint; the patient, with their own token, finds the CarePlan in a search
(a draft put to them is theirs to read, one that was not is not) and signs it; a clinician signs
with theirs, and the CarePlan is active. A decline with a comment is read back by the unit, and
refusals are OperationOutcomes naming the parameter.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, OperationOutcome

from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
UNIT = "hsa-id|SE2321000065-1254"


class Party:
    """One party's fhirpy client, with the version they read in ``If-Match`` when asked."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.base_url = base_url
        self.bearer = headers["Authorization"]

    def client(self, version: str | None = None) -> SyncFHIRClient:
        extra = {} if version is None else {"If-Match": f'W/"{version}"'}
        return SyncFHIRClient(
            f"{self.base_url}/fhir", authorization=self.bearer, extra_headers=extra
        )

    def careplans(self, contract_id: str) -> list[dict[str, Any]]:
        search = (
            self.client()
            .resources("CarePlan")
            .search(identifier=f"{urls.ID_CONTRACT}|{contract_id}")
        )
        return [dict(r) for r in search.fetch_all()]

    def sign(self, careplan: dict[str, Any], **parameters: str) -> dict[str, Any]:
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": name, "valueCode" if name == "decision" else "valueString": value}
                for name, value in {"decision": "agree", **parameters}.items()
            ],
        }
        client = self.client(careplan["meta"]["versionId"])
        return dict(client.execute(f"CarePlan/{careplan['id']}/$sign", data=body))


@pytest.fixture
def draft(base_url: str, issuer: TestIssuer) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"fhir-sign-{uuid.uuid4().hex[:12]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    created = httpx.post(
        f"{base_url}/contracts", json=data, headers=issuer.headers("ehr", organization=UNIT)
    )
    assert created.status_code == 201, created.text
    return data


def _parties(base_url: str, issuer: TestIssuer, draft: dict[str, Any]) -> dict[str, Party]:
    patient = f"personnummer|{draft['patient']['identifier']['value']}"
    return {
        "ehr": Party(base_url, issuer.headers("ehr", organization=UNIT)),
        "clinician": Party(
            base_url, issuer.headers("clinician", organization=UNIT, subject="dr-fhirpy")
        ),
        "patient": Party(base_url, issuer.headers("patient", patient=patient)),
    }


def test_fhirpy_proposes_a_careplan_the_patient_signs_and_the_clinician_agrees(
    base_url: str, issuer: TestIssuer, draft: dict[str, Any]
) -> None:
    parties = _parties(base_url, issuer, draft)
    (careplan,) = parties["ehr"].careplans(draft["id"])
    # Not yet put to the patient: the unit's alone.
    assert parties["patient"].careplans(draft["id"]) == []

    version = careplan["meta"]["versionId"]
    proposed = parties["ehr"].client(version).execute(f"CarePlan/{careplan['id']}/$propose")
    assert any(e["url"] == urls.EXT_PATIENT_REVIEW for e in proposed["extension"])
    (shown,) = parties["patient"].careplans(draft["id"])
    assert shown["meta"]["versionId"] == proposed["meta"]["versionId"]

    signed = parties["patient"].sign(shown)
    # A signature changes no record: the clinician signs the same version.
    assert signed["meta"]["versionId"] == proposed["meta"]["versionId"]
    assert signed["status"] == "draft"
    agreed = parties["clinician"].sign(signed)

    assert agreed["status"] == "active"
    assert int(agreed["meta"]["versionId"]) == int(signed["meta"]["versionId"]) + 1
    assert not any(e["url"] == urls.EXT_PATIENT_REVIEW for e in agreed.get("extension", []))


def test_fhirpy_declines_with_a_comment_and_refusals_name_the_parameter(
    base_url: str, issuer: TestIssuer, draft: dict[str, Any]
) -> None:
    parties = _parties(base_url, issuer, draft)
    proposed = _proposed(parties, draft)

    with pytest.raises(OperationOutcome) as unknown:
        parties["patient"].sign(proposed, decision="maybe")
    with pytest.raises(OperationOutcome) as by_clinician:
        parties["clinician"].sign(proposed, decision="decline", comment="Nej.")
    with pytest.raises(ForbiddenError) as by_system:
        parties["ehr"].sign(proposed)
    why = "Jag vill hellre ha samtal varannan vecka."
    declined = parties["patient"].sign(proposed, decision="decline", comment=why)

    assert unknown.value.resource["issue"][0]["expression"] == [
        "Parameters.parameter.where(name = 'decision')"
    ]
    assert by_clinician.value.resource["issue"][0]["code"] == "business-rule"
    # An EHR acting as a system holds no right to sign: an OperationOutcome saying so.
    assert json.loads(str(by_system.value))["issue"][0]["code"] == "forbidden"
    (seen,) = parties["ehr"].careplans(draft["id"])
    assert seen["meta"]["versionId"] == declined["meta"]["versionId"]
    review = next(e for e in seen["extension"] if e["url"] == urls.EXT_PATIENT_REVIEW)
    parts = {p["url"]: p for p in review["extension"]}
    assert parts["comment"]["valueString"] == why
    assert "valueDateTime" in parts["declined"]


def test_fhirpy_reports_progress_and_proposes_on_the_agreed_careplan(
    base_url: str, issuer: TestIssuer, draft: dict[str, Any]
) -> None:
    parties = _parties(base_url, issuer, draft)
    proposed = _proposed(parties, draft)
    agreed = parties["clinician"].sign(parties["patient"].sign(proposed))
    assert agreed["status"] == "active"
    patient = parties["patient"].client()
    note = "Promenerade 30 minuter i dag."

    reported = patient.execute(
        f"CarePlan/{proposed['id']}/$progress",
        data=_parameters(
            ("activity", "valueString", "walk"),
            ("status", "valueCode", "in-progress"),
            ("note", "valueString", note),
        ),
    )
    asked = patient.execute(
        f"CarePlan/{proposed['id']}/$proposal",
        data=_parameters(
            ("kind", "valueCode", "activity"),
            ("text", "valueString", "Kan promenaden vara varannan dag?"),
            ("about", "valueString", "walk"),
        ),
    )
    with pytest.raises(ForbiddenError):
        patient.execute(
            f"CarePlan/{proposed['id']}/$progress",
            data=_parameters(
                ("activity", "valueString", "sodium"), ("status", "valueCode", "completed")
            ),
        )
    with pytest.raises(OperationOutcome) as unknown:
        patient.execute(
            f"CarePlan/{proposed['id']}/$proposal",
            data=_parameters(("kind", "valueCode", "wish")),
        )

    assert reported["status"] == "active"
    walk = next(a for a in reported["activity"] if a.get("id") == "walk")
    assert walk["detail"]["status"] == "in-progress"
    assert walk["progress"][0]["text"] == note
    proposals = [n for n in asked["note"] if str(n.get("id", "")).startswith("proposal:")]
    assert [p["text"] for p in proposals] == ["Kan promenaden vara varannan dag?"]
    assert asked["status"] == "active"
    assert unknown.value.resource["issue"][0]["expression"] == [
        "Parameters.parameter.where(name = 'text')"
    ]


def _proposed(parties: dict[str, Party], draft: dict[str, Any]) -> dict[str, Any]:
    """The draft's CarePlan once the EHR found it and put it to the patient."""
    (careplan,) = parties["ehr"].careplans(draft["id"])
    client = parties["ehr"].client(careplan["meta"]["versionId"])
    return dict(client.execute(f"CarePlan/{careplan['id']}/$propose"))


def _parameters(*given: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, kind: value} for name, kind, value in given],
    }
