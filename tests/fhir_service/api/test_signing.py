"""The patient as a party, against the real HAPI: a version put to the patient is agreed by each
party's own token in either order, a change in between voids a signature, the patient may decline
saying why, and the one-call agreement of an EHR is recorded as what it is.

Tokens: the EHR's (a system acting for the unit) writes and proposes; the patient's own and a
clinician's own sign. What HAPI holds is read straight from HAPI, as an auditor would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_service.contract import AgreementParty, Contract
from fhir_service.mapping import urls
from fhir_service.mapping.provenance import contents_digest
from tests.auth import ISSUER, TestIssuer
from tests.service_app import ready_app
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
CARE_UNIT = "hsa-id|SE2321000065-1254"
CLINICIAN = "clinician-anna-berg"
PROBLEM_JSON = "application/problem+json"
_CONSENT = "1.2.840.10065.1.12.1.7"
_VERIFICATION = "1.2.840.10065.1.12.1.5"


class Parties:
    """The service as each party reaches it."""

    def __init__(self, client: TestClient, issuer: TestIssuer, patient: str) -> None:
        self.client = client
        self.issuer = issuer
        self.patient_id = patient
        self.ehr = issuer.headers("ehr", organization=CARE_UNIT)
        self.clinician = issuer.headers("clinician", organization=CARE_UNIT, subject=CLINICIAN)
        self.patient = issuer.headers("patient", patient=f"personnummer|{patient}")

    def post(
        self, path: str, who: dict[str, str], version: int | None, body: Any = None
    ) -> httpx.Response:
        headers = dict(who)
        if version is not None:
            headers["If-Match"] = f'W/"{version}"'
        return self.client.post(path, headers=headers, json=body)

    def sign(self, contract: dict[str, Any], who: dict[str, str], **body: Any) -> httpx.Response:
        answer = {"decision": "agree", **body}
        return self.post(f"/contracts/{contract['id']}/sign", who, contract["version"], answer)

    def propose(self, contract: dict[str, Any]) -> httpx.Response:
        return self.post(f"/contracts/{contract['id']}/propose", self.ehr, contract["version"])

    def read(self, contract_id: str, who: dict[str, str]) -> httpx.Response:
        return self.client.get(f"/contracts/{contract_id}", headers=who)


@pytest.fixture
def parties(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[Parties]:
    with ready_app(conformance_loaded, tmp_path, issuer) as client:
        yield Parties(client, issuer, unique_personnummer())


def _draft(parties: Parties) -> dict[str, Any]:
    """A new draft of the example contract, for this test's patient, as the EHR created it."""
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"sign-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = parties.patient_id
    # A goal the unit keeps from the patient's view: the patient signs what they are shown.
    data["goals"].append(
        {
            "key": "risk",
            "description": "Bedöma suicidrisken vid varje besök",
            "confidentiality": "restricted",
        }
    )
    created = parties.client.post("/contracts", json=data, headers=parties.ehr)
    assert created.status_code == 201, created.text
    return dict(created.json())


def _tagged(hapi: str, contract_id: str, system: str) -> list[dict[str, Any]]:
    """The Provenances tagged ``system`` that target the contract's CarePlan, from HAPI."""
    careplan = httpx.get(
        f"{hapi}/CarePlan", params={"identifier": f"{urls.ID_CONTRACT}|{contract_id}"}
    ).json()["entry"][0]["resource"]["id"]
    found = httpx.get(
        f"{hapi}/Provenance",
        params={"agreement-target": f"CarePlan/{careplan}", "_count": "200"},
        headers={"Cache-Control": "no-cache"},
    ).json()
    return [
        e["resource"]
        for e in found.get("entry", [])
        if any(t["system"] == system for t in e["resource"]["meta"].get("tag", []))
    ]


def _signatures(hapi: str, contract: dict[str, Any]) -> list[dict[str, Any]]:
    return _tagged(hapi, contract["id"], urls.TAG_SIGNATURE)


def _agreements(hapi: str, contract_id: str) -> list[dict[str, Any]]:
    return _tagged(hapi, contract_id, urls.TAG_AGREEMENT)


def _parties(contract: dict[str, Any], field: str) -> set[str]:
    return {s["party"] for s in contract.get(field, [])}


def test_a_version_put_to_the_patient_is_agreed_by_the_patient_and_then_the_clinician(
    parties: Parties, conformance_loaded: str
) -> None:
    draft = _draft(parties)
    # An unproposed draft is the unit's: the patient neither sees nor signs it.
    assert parties.read(draft["id"], parties.patient).status_code == 404
    assert parties.sign(draft, parties.patient).status_code == 404

    proposed = parties.propose(draft)
    assert proposed.status_code == 200, proposed.text
    shown = parties.read(draft["id"], parties.patient)
    assert shown.status_code == 200, shown.text
    assert shown.json()["patient_review"]["proposed_at"]
    assert shown.headers["ETag"] == proposed.headers["ETag"]

    by_patient = parties.sign(shown.json(), parties.patient)
    assert by_patient.status_code == 200, by_patient.text
    # Answered with what the patient may see, as a read answers them.
    assert "risk" not in {g["key"] for g in shown.json()["goals"]}
    assert by_patient.json()["goals"] == shown.json()["goals"]
    assert by_patient.json()["status"] == "draft"
    assert _parties(by_patient.json(), "signatures") == {"patient"}
    # A signature changes no record: the version the clinician reads is the one signed.
    assert by_patient.headers["ETag"] == proposed.headers["ETag"]

    by_clinician = parties.sign(by_patient.json(), parties.clinician)
    assert by_clinician.status_code == 200, by_clinician.text
    agreed = by_clinician.json()
    assert agreed["status"] == "agreed"
    assert {(a["party"], a["attested"]) for a in agreed["agreements"]} == {
        ("patient", False),
        ("responsible-clinician", False),
    }
    assert "signatures" not in agreed
    assert "patient_review" not in agreed

    # In HAPI: each signature its signer's own act, bound to the contents they were shown.
    read_back = Contract.model_validate(proposed.json())
    signed = {s["activity"]["text"]: s for s in _signatures(conformance_loaded, draft)}
    assert len(signed) == 2
    for party, subject in (
        (AgreementParty.PATIENT, None),
        (AgreementParty.RESPONSIBLE_CLINICIAN, CLINICIAN),
    ):
        provenance = signed[f"signature of the patient contract by the {party}"]
        signature = provenance["signature"][0]
        assert signature["type"][0]["code"] == _CONSENT
        assert signature["who"]["identifier"]["system"] == ISSUER
        if subject is not None:
            assert signature["who"]["identifier"]["value"] == subject
        digest = base64.b64decode(signature["data"]).hex()
        assert digest == contents_digest(read_back, party)
        version = proposed.json()["version"]
        assert provenance["target"][0]["reference"].endswith(f"/_history/{version}")
    # The patient was shown less than the clinician (not the restricted goal), and signed that.
    assert contents_digest(read_back, AgreementParty.PATIENT) != contents_digest(
        read_back, AgreementParty.RESPONSIBLE_CLINICIAN
    )
    (agreement,) = _agreements(conformance_loaded, draft["id"])
    assert "policy" not in agreement
    assert {s["type"][0]["code"] for s in agreement["signature"]} == {_CONSENT}


def test_the_clinician_may_sign_first_and_the_patients_signature_then_agrees(
    parties: Parties,
) -> None:
    draft = _draft(parties)
    first = parties.sign(draft, parties.clinician)
    assert first.status_code == 200, first.text
    assert _parties(first.json(), "signatures") == {"responsible-clinician"}
    # Proposing writes the CarePlan, not the contents: the clinician's signature holds.
    proposed = parties.propose(first.json())
    assert proposed.status_code == 200, proposed.text
    assert _parties(proposed.json(), "signatures") == {"responsible-clinician"}

    agreed = parties.sign(proposed.json(), parties.patient)
    assert agreed.status_code == 200, agreed.text
    assert agreed.json()["status"] == "agreed"
    read = parties.read(draft["id"], parties.ehr).json()
    assert read["status"] == "agreed"
    assert read["version"] == agreed.json()["version"]


def test_a_change_in_between_voids_the_earlier_signature(parties: Parties) -> None:
    draft = _draft(parties)
    proposed = parties.propose(draft).json()
    signed = parties.sign(proposed, parties.patient)
    assert _parties(signed.json(), "signatures") == {"patient"}

    changed = dict(signed.json())
    changed["wishes"] = [*changed.get("wishes", []), "Att få träffa samma läkare varje gång."]
    updated = parties.client.put(
        f"/contracts/{draft['id']}",
        json=changed,
        headers={**parties.ehr, "If-Match": f'W/"{changed["version"]}"'},
    )
    assert updated.status_code == 200, updated.text
    assert "signatures" not in updated.json()
    # Still put to the patient: the change is theirs to see and sign again.
    assert updated.json()["patient_review"] == proposed["patient_review"]

    # The clinician signs the new contents: not agreed, the patient's signature was of the old.
    by_clinician = parties.sign(updated.json(), parties.clinician)
    assert by_clinician.json()["status"] == "draft"
    assert _parties(by_clinician.json(), "signatures") == {"responsible-clinician"}
    again = parties.sign(by_clinician.json(), parties.patient)
    assert again.json()["status"] == "agreed"


def test_a_decline_reaches_the_unit_with_its_comment_and_the_patient_is_asked_again(
    parties: Parties,
) -> None:
    draft = _draft(parties)
    by_clinician = parties.sign(parties.propose(draft).json(), parties.clinician).json()
    comment = "Jag orkar inte promenera varje dag, men tre dagar i veckan går bra."
    declined = parties.sign(by_clinician, parties.patient, decision="decline", comment=comment)
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "draft"

    seen_by_unit = parties.read(draft["id"], parties.ehr).json()
    assert seen_by_unit["patient_review"]["comment"] == comment
    assert seen_by_unit["patient_review"]["declined_at"]
    # The clinician's signature of the unchanged contents holds; the patient's answer is no.
    assert _parties(seen_by_unit, "signatures") == {"responsible-clinician"}

    # Declined: not awaiting the patient until the unit asks again.
    refused = parties.sign(seen_by_unit, parties.patient)
    assert refused.status_code == 409, refused.text
    assert "not awaiting the patient" in refused.json()["detail"]
    asked_again = parties.propose(seen_by_unit)
    assert asked_again.status_code == 200, asked_again.text
    assert asked_again.json()["patient_review"]["declined_at"] is None
    agreed = parties.sign(asked_again.json(), parties.patient)
    assert agreed.json()["status"] == "agreed", agreed.text


def test_both_parties_signing_at_once_agree_the_contract_once(
    parties: Parties, conformance_loaded: str
) -> None:
    proposed = parties.propose(_draft(parties)).json()
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(
            pool.map(lambda who: parties.sign(proposed, who), [parties.patient, parties.clinician])
        )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    read = parties.read(proposed["id"], parties.ehr).json()
    assert read["status"] == "agreed"
    assert len(_agreements(conformance_loaded, proposed["id"])) == 1


def test_what_only_the_patient_or_a_person_may_do_is_refused_in_the_callers_terms(
    parties: Parties,
) -> None:
    draft = _draft(parties)
    proposed = parties.propose(draft).json()

    # A signature is a person's act: an EHR acting as a system has no right to give one.
    by_system = parties.sign(proposed, parties.ehr)
    assert by_system.status_code == 403
    assert by_system.headers["Content-Type"] == PROBLEM_JSON
    # Only the patient declines; a comment is a decline's.
    by_clinician = parties.sign(proposed, parties.clinician, decision="decline", comment="Nej.")
    assert by_clinician.status_code == 422
    assert by_clinician.json()["errors"][0]["location"] == "$.decision"
    with_comment = parties.sign(proposed, parties.patient, comment="Ja, gärna.")
    assert with_comment.status_code == 422
    assert with_comment.json()["errors"][0]["location"] == "$.comment"
    # A signature names the version it was shown.
    unversioned = parties.post(
        f"/contracts/{draft['id']}/sign", parties.patient, None, {"decision": "agree"}
    )
    assert unversioned.status_code == 428
    # A patient signs; they do not write the contract or propose it.
    written = parties.client.put(
        f"/contracts/{draft['id']}",
        json=proposed,
        headers={**parties.patient, "If-Match": f'W/"{proposed["version"]}"'},
    )
    assert written.status_code == 403
    assert (
        parties.post(
            f"/contracts/{draft['id']}/propose", parties.patient, proposed["version"]
        ).status_code
        == 403
    )
    # Another patient's contract is not there for them.
    other = Parties(parties.client, parties.issuer, unique_personnummer())
    assert parties.sign(proposed, other.patient).status_code == 404
    assert parties.read(draft["id"], parties.ehr).json()["version"] == proposed["version"]


def test_the_one_call_agreement_is_recorded_as_attested_by_the_unit(
    parties: Parties, conformance_loaded: str
) -> None:
    draft = _draft(parties)
    agreements = [
        {"party": "patient", "agreed_at": "2026-11-02T10:00:00+01:00"},
        {"party": "responsible-clinician", "agreed_at": "2026-11-02T10:05:00+01:00"},
    ]
    agreed = parties.post(
        f"/contracts/{draft['id']}/agree", parties.ehr, draft["version"], {"agreements": agreements}
    )
    assert agreed.status_code == 200, agreed.text
    assert {a["attested"] for a in agreed.json()["agreements"]} == {True}
    (agreement,) = _agreements(conformance_loaded, draft["id"])
    assert agreement["policy"] == [urls.POLICY_AGREEMENT_ATTESTED]
    assert {s["type"][0]["code"] for s in agreement["signature"]} == {_VERIFICATION}
    assert all(s["onBehalfOf"]["reference"] for s in agreement["signature"])
    expected = hashlib.sha256(b"").hexdigest()
    assert all(base64.b64decode(s["data"]).hex() != expected for s in agreement["signature"])
