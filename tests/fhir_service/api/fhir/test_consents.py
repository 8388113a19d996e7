"""The patient's leaves for relatives as FHIR ``Consent``, driven by ``fhirpy``, a client nobody
here wrote: the patient gives a leave, finds and reads it, the relative reads the plan while it
holds, the patient revokes it by saving it inactive, and the relative is refused from then on.
What is no leave, or another patient's, is refused with an OperationOutcome naming where.

The service runs as a process against the real HAPI; the patient has an agreed contract.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, OperationOutcome, ResourceNotFound

from tests.auth import TestIssuer
from tests.support import load_data, unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
UNIT = "hsa-id|SE2321000065-1254"
PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
ACTIONS = "http://terminology.hl7.org/CodeSystem/consentaction"


def _patient_with_a_plan(base_url: str, issuer: TestIssuer) -> str:
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"fhir-leave-{uuid.uuid4().hex[:12]}"
    number = unique_personnummer()
    data["patient"]["identifier"]["value"] = number
    data["relatives"][0]["identifier"] = {"kind": "personnummer", "value": unique_personnummer()}
    ehr = issuer.headers("ehr", organization=UNIT)
    created = httpx.post(f"{base_url}/contracts", json=data, headers=ehr, timeout=60)
    assert created.status_code == 201, created.text
    agreed = httpx.post(
        f"{base_url}/contracts/{data['id']}/agree",
        json=load_data("booking/agreements.json"),
        headers={**ehr, "If-Match": 'W/"1"'},
        timeout=60,
    )
    assert agreed.status_code == 200, agreed.text
    return f"personnummer|{number}"


def _leave(relative: str, **provision: Any) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "provision": {
            "type": "permit",
            "period": {"end": "2099-06-30"},
            "actor": [
                {
                    "reference": {
                        "identifier": {"system": PERSONNUMMER, "value": relative},
                        "display": "Eva Lindqvist",
                    }
                }
            ],
            "action": [{"coding": [{"system": ACTIONS, "code": "access"}]}],
            **provision,
        },
    }


@pytest.fixture
def patient(base_url: str, issuer: TestIssuer) -> str:
    return _patient_with_a_plan(base_url, issuer)


def _client(base_url: str, issuer: TestIssuer, role: str, **claims: Any) -> SyncFHIRClient:
    token = issuer.token(role, **claims)  # type: ignore[arg-type]
    return SyncFHIRClient(f"{base_url}/fhir", authorization=f"Bearer {token}")


def test_a_patient_gives_finds_and_revokes_a_leave_and_the_relative_reads_only_meanwhile(
    base_url: str, issuer: TestIssuer, patient: str
) -> None:
    fhir = _client(base_url, issuer, "patient", patient=patient)
    relative = unique_personnummer()
    correct = {"coding": [{"system": ACTIONS, "code": "correct"}]}
    access = {"coding": [{"system": ACTIONS, "code": "access"}]}

    consent = fhir.resource("Consent", **_leave(relative, action=[access, correct]))
    consent.save()

    assert consent["status"] == "active"
    assert consent["provision"]["period"]["end"].startswith("2099-06-30T23:59:59")
    assert {c["code"] for a in consent["provision"]["action"] for c in a["coding"]} == {
        "access",
        "correct",
    }
    related_person = consent["provision"]["actor"][0]["reference"]["reference"]
    assert related_person.startswith("RelatedPerson/")
    found = fhir.resources("Consent").include("Consent", "actor").fetch_raw()
    assert [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "match"] == [
        consent["id"]
    ]
    person = next(e["resource"] for e in found["entry"] if e["search"]["mode"] == "include")
    assert person["identifier"][0] == {"system": PERSONNUMMER, "value": relative}
    assert person["name"][0]["family"] == "Lindqvist"
    # The same leave by the JSON facade: one leave, two forms.
    as_json = httpx.get(
        f"{base_url}/consents",
        headers={"Authorization": f"Bearer {issuer.token('patient', patient=patient)}"},
        timeout=60,
    ).json()
    assert [(g["id"], g["may_report"], g["fhir_user"]) for g in as_json] == [
        (consent["id"], True, related_person)
    ]

    kin = _client(base_url, issuer, "relative", patient=patient, fhirUser=related_person)
    assert kin.resources("CarePlan").fetch()

    consent["status"] = "inactive"
    consent.save()

    assert fhir.reference("Consent", consent["id"]).to_resource()["status"] == "inactive"
    with pytest.raises(ForbiddenError, match="no leave that is in force"):
        kin.resources("CarePlan").fetch()
    # Given again to the same relative, by the RelatedPerson the first named.
    again = fhir.resource("Consent", **_leave(relative))
    again["provision"]["actor"] = [{"reference": {"reference": related_person}}]
    again.save()
    assert again["provision"]["actor"][0]["reference"]["reference"] == related_person
    assert kin.resources("CarePlan").fetch()


def test_what_is_no_leave_is_refused_naming_each_place_at_once(
    base_url: str, issuer: TestIssuer, patient: str
) -> None:
    fhir = _client(base_url, issuer, "patient", patient=patient)
    wrong = _leave("19121212-1213", action=[{"coding": [{"system": ACTIONS, "code": "disclose"}]}])
    wrong["provision"]["period"] = {"start": "2027-01-01T10:00:00"}

    with pytest.raises(OperationOutcome) as refused:
        fhir.resource("Consent", **wrong).save()

    places = {e for i in refused.value.resource["issue"] for e in i.get("expression", [])}
    assert places == {
        "Consent.provision.actor[0].reference.identifier",
        "Consent.provision.period.start",
        "Consent.provision.period.end",
        "Consent.provision.action",
    }
    assert fhir.resources("Consent").fetch() == []


def test_another_patients_leave_is_neither_given_nor_there(
    base_url: str, issuer: TestIssuer, patient: str
) -> None:
    fhir = _client(base_url, issuer, "patient", patient=patient)
    other = _patient_with_a_plan(base_url, issuer)
    theirs = _client(base_url, issuer, "patient", patient=other)
    their_leave = theirs.resource("Consent", **_leave(unique_personnummer()))
    their_leave.save()
    on_their_behalf = {
        **_leave(unique_personnummer()),
        "patient": {"identifier": {"system": PERSONNUMMER, "value": other.split("|")[1]}},
    }

    with pytest.raises(ForbiddenError, match="does not reach this patient"):
        fhir.resource("Consent", **on_their_behalf).save()
    with pytest.raises(ResourceNotFound):
        fhir.reference("Consent", their_leave["id"]).to_resource()
    revoked = httpx.put(
        f"{base_url}/fhir/Consent/{their_leave['id']}",
        json={**their_leave.serialize(), "status": "inactive"},
        headers={"Authorization": f"Bearer {issuer.token('patient', patient=patient)}"},
        timeout=60,
    )
    changed = httpx.put(
        f"{base_url}/fhir/Consent/{their_leave['id']}",
        json={**their_leave.serialize(), "status": "rejected"},
        headers={"Authorization": f"Bearer {issuer.token('patient', patient=other)}"},
        timeout=60,
    )

    assert fhir.resources("Consent").fetch() == []
    assert revoked.status_code == 404
    assert changed.status_code == 422
    assert changed.json()["issue"][0]["expression"] == ["Consent.status"]
    assert theirs.reference("Consent", their_leave["id"]).to_resource()["status"] == "active"
