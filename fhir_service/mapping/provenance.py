"""The Provenance that records an agreement: who agreed to which contract version, and when."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from fhir_service.contract import AgreementParty, Contract
from fhir_service.mapping import urls
from fhir_service.mapping.elements import identity_url, instant

__all__ = ["agreement_entry"]

_SIGNATURE_TYPE = {
    "system": "urn:iso-astm:E1762-95:2013",
    "code": "1.2.840.10065.1.12.1.7",
    "display": "Consent Signature",
}
_PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_AGREEMENT_NAMESPACE = uuid.UUID("b0c7f0a8-4a3b-5d0e-9f55-7e1f0c2a9d31")


def agreement_entry(
    contract: Contract, careplan_url: str, patient_url: str, clinician_url: str
) -> dict[str, Any]:
    """The transaction entry of an agreed contract's Provenance, signed by both parties.

    HAPI stores ``target`` with the CarePlan version written in the same transaction.
    """
    signers = {
        AgreementParty.PATIENT: patient_url,
        AgreementParty.RESPONSIBLE_CLINICIAN: clinician_url,
    }
    agreements = sorted(contract.agreements, key=lambda a: a.party)
    # What was agreed, by whom and when: a new agreement to other contents is another record.
    contents = hashlib.sha256(
        contract.model_dump_json(exclude={"version", "status", "agreements"}).encode()
    ).hexdigest()
    signed = (f"{a.party}@{instant(a.agreed_at)}" for a in agreements)
    seed = "|".join([contract.id, contents, *signed])
    agreement = uuid.uuid5(_AGREEMENT_NAMESPACE, seed).hex
    resource = {
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": urls.TAG_AGREEMENT, "code": agreement}]},
        "target": [{"reference": careplan_url}],
        "recorded": instant(max(a.agreed_at for a in agreements)),
        "activity": {"text": "agreement to the patient contract"},
        "agent": [
            {
                "type": {"coding": [{"system": _PROVENANCE_PARTICIPANT, "code": "author"}]},
                "who": {"reference": signers[a.party]},
            }
            for a in agreements
        ],
        "signature": [
            {
                "type": [_SIGNATURE_TYPE],
                "when": instant(a.agreed_at),
                "who": {"reference": signers[a.party]},
            }
            for a in agreements
        ],
    }
    # Provenance has no identifier. The agreement's tag makes it a conditional create all the
    # same: a PUT by id would store a new version on every re-post (HAPI 8.8 compares the
    # stored, auto-versioned target with the unversioned one sent).
    url = identity_url("Provenance", urls.TAG_AGREEMENT, agreement)
    return {
        "fullUrl": url,
        "resource": resource,
        "request": {
            "method": "POST",
            "url": "Provenance",
            "ifNoneExist": f"_tag={urls.TAG_AGREEMENT}|{agreement}",
        },
    }
