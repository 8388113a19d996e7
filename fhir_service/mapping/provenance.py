"""Provenance of contracts: who agreed to which version, and who made each change.

Three kinds. The first two are written in the same transaction as the change they describe, so a
change never exists without its Provenance:

- the agreement (`agreement_entry`): the patient's and the responsible clinician's signatures
  on one contract version;
- the change (`change_entry`): who wrote which records, for whom, through which client;
- one party's own signature (`signature_entry`) of a version not yet agreed, by their own
  authenticated act; it changes no record, and the second of them makes the agreement.

Every signature's ``data`` is the SHA-256 of the terms signed (`contents_digest`): the whole
version for the clinician, what the patient is shown of it for the patient, each without the
activities' progress. A signature holds while the contract's terms are those: a change in
between voids it.

HAPI turns each ``target`` into a reference to the version the transaction wrote. The CarePlan
target also carries the contract's identifier (``target-identifier`` searches find it); an
agreement's names the agreed version, ``<contract id>/_history/<version>``, so an auditor finds
who agreed version N with one query.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_service.contract import (
    Agreement,
    AgreementParty,
    Confidentiality,
    Contract,
    Signature,
    disclose,
)
from fhir_service.mapping import urls
from fhir_service.mapping.elements import identifier, identity_url, instant

__all__ = [
    "ATTESTED_SIGNATURE",
    "Author",
    "SignedContents",
    "agreement_entry",
    "change_entry",
    "contents_digest",
    "digest_of_data",
    "record_change_entry",
    "signature_entry",
    "valid_signatures",
]

_SIGNATURE_SYSTEM = "urn:iso-astm:E1762-95:2013"
_SIGNATURE_TYPE = {
    "system": _SIGNATURE_SYSTEM,
    "code": "1.2.840.10065.1.12.1.7",
    "display": "Consent Signature",
}
ATTESTED_SIGNATURE = {
    "system": _SIGNATURE_SYSTEM,
    "code": "1.2.840.10065.1.12.1.5",
    "display": "Verification Signature",
}
"""The type of a signature by which the responsible unit attests a party's agreement given
elsewhere: a verification, not the party's own consent signature."""
_PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_AGREEMENT_NAMESPACE = uuid.UUID("b0c7f0a8-4a3b-5d0e-9f55-7e1f0c2a9d31")


def _terms(agreed: dict[str, Any]) -> str:
    """What a party agrees to, as JSON: the ``agreed`` contents (`_agreed`), without how far
    each activity has come (its status is progress reported as the plan is carried out, not a
    term of it) and without the patient's proposals. ``agreed`` is left as it was."""
    # What the patient asked to change is no term until the unit takes it into the contract.
    terms = {name: value for name, value in agreed.items() if name != "proposals"}
    if "activities" in terms:
        terms["activities"] = [
            {name: value for name, value in activity.items() if name not in _PROGRESS}
            for activity in terms["activities"]
        ]
    return _canonical(terms)


_PROGRESS = frozenset({"status", "progress"})


def _agreed(contract: Contract) -> dict[str, Any]:
    """The contents an agreement is to. Unset optional elements are left out, and so are
    elements added to the model later while they hold what a contract said before them (an
    activity's normal confidentiality and no goals, the unit's language): an agreement
    recorded before them keeps its id, and re-posting it records no second one."""
    contents = contract.model_dump(
        mode="json",
        exclude={"version", "status", "agreements", "patient_review", "signatures"},
        exclude_none=True,
    )
    if contract.language == contract.unit_language():
        del contents["language"]
    for activity in contents.get("activities", []):
        if activity["confidentiality"] == Confidentiality.NORMAL:
            del activity["confidentiality"]
        if not activity["goals"]:
            del activity["goals"]
    return contents


def _canonical(contents: dict[str, Any]) -> str:
    # Digests and agreement ids are taken of this text: it must stay as it is, byte for byte
    # (tests/data/agreements/ pins it).
    return json.dumps(contents, ensure_ascii=False, separators=(",", ":"))


def contents_digest(contract: Contract, party: AgreementParty) -> str | None:
    """The SHA-256 (hex) of the terms ``party`` agrees to in ``contract`` (`_terms`): the whole
    version for the responsible clinician; for the patient, what they are shown of it (nothing
    restricted). None when the patient is shown nothing of it."""
    return _digests(contract)[party]


def _digests(
    contract: Contract, agreed: dict[str, Any] | None = None
) -> dict[AgreementParty, str | None]:
    """Each party's `contents_digest`; ``agreed``: the contract's `_agreed`, when made already.
    A patient shown all of it agrees to the clinician's terms, which are not made twice."""
    whole = _sha256(_terms(_agreed(contract) if agreed is None else agreed))
    shown = disclose(contract, None).contract
    if shown is contract:
        patient: str | None = whole
    elif shown is None:
        patient = None
    else:
        patient = _sha256(_terms(_agreed(shown)))
    return {AgreementParty.RESPONSIBLE_CLINICIAN: whole, AgreementParty.PATIENT: patient}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _signed_data(digest: str | None) -> dict[str, str]:
    if digest is None:
        return {}
    return {
        "targetFormat": "application/json",
        "data": base64.b64encode(bytes.fromhex(digest)).decode(),
    }


@dataclass(frozen=True, slots=True)
class SignedContents:
    """A signature as its Provenance holds it: who, when, which version, and the digest of the
    contents signed (hex)."""

    signature: Signature
    digest: str


def valid_signatures(contract: Contract, signed: list[SignedContents]) -> tuple[Signature, ...]:
    """The signatures of ``signed`` that hold for ``contract``: those of its current contents,
    the earliest of each party's; the patient's only while the version is put to them, given
    since it was (a decline, or a new proposal, asks them again)."""
    if not signed:
        return ()
    review = contract.patient_review
    digests = _digests(contract)
    valid: dict[AgreementParty, Signature] = {}
    for each in sorted(signed, key=lambda s: s.signature.signed_at):
        signature = each.signature
        if signature.party is AgreementParty.PATIENT and (
            review is None
            or review.declined_at is not None
            or signature.signed_at < review.proposed_at
        ):
            continue
        if signature.party not in valid and each.digest == digests[signature.party]:
            valid[signature.party] = signature
    return tuple(valid[p] for p in sorted(valid))


def digest_of_data(data: str) -> str | None:
    """The hex digest a signature's ``data`` holds; None when it holds none."""
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == hashlib.sha256().digest_size else None


def signature_entry(
    contract: Contract,
    signature: Signature,
    *,
    careplan_id: str,
    party_url: str,
    author: Author,
) -> dict[str, Any]:
    """The transaction entry of one party's own signature of ``contract`` (as stored, at
    ``signature.version``): a Provenance targeting that CarePlan version whose signature's
    ``who`` is the token's user who signed, ``onBehalfOf`` the party's record (``party_url``:
    the Patient, or the responsible clinician's PractitionerRole or unit) and ``data`` the
    digest of the contents signed.

    Signing the same contents again finds the first (a conditional create on its tag); a
    patient signing again after a new proposal signs anew.
    """
    digest = contents_digest(contract, signature.party)
    asked = contract.patient_review
    put = asked.proposed_at if signature.party is AgreementParty.PATIENT and asked else None
    seed = f"{contract.id}|{signature.party}|{digest}|{put and instant(put)}"
    code = uuid.uuid5(_AGREEMENT_NAMESPACE, seed).hex
    version = f"{contract.id}/_history/{signature.version}"
    user = _user(author)
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": urls.TAG_SIGNATURE, "code": code}]},
        "target": [
            {
                "reference": f"CarePlan/{careplan_id}/_history/{signature.version}",
                "identifier": {"system": urls.ID_CONTRACT_VERSION, "value": version},
            }
        ],
        "recorded": instant(signature.signed_at),
        "activity": {"text": f"signature of the patient contract by the {signature.party}"},
        "agent": [user],
        "signature": [
            {
                "type": [_SIGNATURE_TYPE],
                "when": instant(signature.signed_at),
                "who": user["who"],
                "onBehalfOf": {"reference": party_url},
                **_signed_data(digest),
            }
        ],
    }
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": resource,
        "request": {
            "method": "POST",
            "url": "Provenance",
            "ifNoneExist": f"_tag={urls.TAG_SIGNATURE}|{code}",
        },
    }


def agreement_entry(
    contract: Contract,
    careplan_url: str,
    patient_url: str,
    responsible_url: str,
    version: int | None = None,
) -> dict[str, Any]:
    """The transaction entry of an agreed contract's Provenance, signed by both parties.

    ``responsible_url`` names the responsible clinician's PractitionerRole, or the unit's
    Organization when the contract names no clinician. HAPI stores ``target`` with the CarePlan
    version written in the same transaction; ``version`` is that version's number, when the
    writer knows it.
    """
    signers = _signers(patient_url, responsible_url)
    agreements = _agreements(contract)
    # What was agreed, by whom and when: a new agreement to other contents is another record.
    agreed = _agreed(contract)
    contents = _sha256(_canonical(agreed))
    signed = (
        f"{a.party}@{instant(a.agreed_at)}{'/attested' if a.attested else ''}" for a in agreements
    )
    seed = "|".join([contract.id, contents, *signed])
    agreement = uuid.uuid5(_AGREEMENT_NAMESPACE, seed).hex
    resource = {
        "resourceType": "Provenance",
        "meta": {"tag": [{"system": urls.TAG_AGREEMENT, "code": agreement}]},
        "target": [_careplan_target(careplan_url, contract.id, version)],
        "recorded": instant(max(a.agreed_at for a in agreements)),
        "activity": {"text": "agreement to the patient contract"},
        "agent": [
            {
                "type": {"coding": [{"system": _PROVENANCE_PARTICIPANT, "code": "author"}]},
                "who": {"reference": signers[a.party]},
            }
            for a in agreements
        ],
        "signature": _signatures(contract, patient_url, responsible_url, agreed),
    }
    if any(a.attested for a in agreements):
        resource["policy"] = [urls.POLICY_AGREEMENT_ATTESTED]
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


@dataclass(frozen=True, slots=True)
class Author:
    """Who makes a change, as its Provenance names them.

    ``user`` is the token's ``(issuer, subject)``; ``organization`` the care unit acted for and
    ``patient`` the patient acting for themselves, each a FHIR ``(system, value)``.
    ``write_key`` tags the Provenance (``urls.TAG_WRITE_KEY``) when the request carried an
    ``Idempotency-Key``: a retry whose first try got no answer finds by it what was written.
    """

    user: tuple[str, str]
    client_id: str | None = None
    organization: tuple[str, str] | None = None
    patient: tuple[str, str] | None = None
    write_key: str | None = None


_OWNED_TYPES = frozenset({"CarePlan", "CareTeam", "Goal", "Appointment", "RelatedPerson"})
_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_CLIENT_ID_SYSTEM = "urn:ietf:params:oauth:client-id"


def change_entry(
    bundle: dict[str, Any],
    contract: Contract,
    author: Author,
    *,
    activity: str,
    created: bool,
    recorded: datetime,
) -> dict[str, Any]:
    """The transaction entry of the Provenance of the change ``bundle`` writes.

    ``bundle`` is the contract's transaction (from ``contract_to_bundle``); every contract-owned
    record it writes becomes a target. ``activity`` names the step (create, update, agree, ...);
    an agreement's change carries the signatures as well.
    """
    resource = _provenance(_targets(bundle, contract.id), author, activity, created, recorded)
    if activity == "agree" and contract.agreements:
        patient_url, responsible_url = _signer_urls(bundle, contract)
        resource["signature"] = _signatures(contract, patient_url, responsible_url)
    tags = []
    if author.write_key is not None:
        tags.append({"system": urls.TAG_WRITE_KEY, "code": author.write_key})
    request: dict[str, Any] = {"method": "POST", "url": "Provenance"}
    if created:
        # A create of a contract that exists already matches its records and writes nothing;
        # its Provenance must not claim a creation either: one per contract, made only once.
        tags.append({"system": urls.TAG_CREATED, "code": contract.id})
        request["ifNoneExist"] = f"_tag={urls.TAG_CREATED}|{contract.id}"
    if tags:
        resource["meta"] = {"tag": tags}
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource, "request": request}


def record_change_entry(
    target_url: str, author: Author, *, activity: str, created: bool, recorded: datetime
) -> dict[str, Any]:
    """The transaction entry of the Provenance of a change of one record that is no part of a
    contract (a care unit's time type), the record named by its ``target_url`` in the
    transaction."""
    resource = _provenance([{"reference": target_url}], author, activity, created, recorded)
    if author.write_key is not None:
        resource["meta"] = {"tag": [{"system": urls.TAG_WRITE_KEY, "code": author.write_key}]}
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": resource,
        "request": {"method": "POST", "url": "Provenance"},
    }


def _provenance(
    targets: list[dict[str, Any]], author: Author, activity: str, created: bool, recorded: datetime
) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": instant(recorded),
        "activity": {
            "coding": [
                {"system": _DATA_OPERATION, "code": "CREATE" if created else "UPDATE"},
            ],
            "text": activity,
        },
        "agent": _agents(author),
    }


def _agents(author: Author) -> list[dict[str, Any]]:
    agents = [_user(author)]
    if author.client_id is not None:
        agents.append(
            {
                "type": {"coding": [{"system": _PROVENANCE_PARTICIPANT, "code": "performer"}]},
                "who": {"identifier": {"system": _CLIENT_ID_SYSTEM, "value": author.client_id}},
            }
        )
    return agents


def _user(author: Author) -> dict[str, Any]:
    """The agent that is the token's user, acting for their unit or as the patient."""
    user_issuer, user_subject = author.user
    user: dict[str, Any] = {
        "type": {"coding": [{"system": _PROVENANCE_PARTICIPANT, "code": "author"}]},
        "who": {"identifier": {"system": user_issuer, "value": user_subject}},
    }
    on_behalf_of = author.organization or author.patient
    if on_behalf_of is not None:
        user["onBehalfOf"] = {"identifier": {"system": on_behalf_of[0], "value": on_behalf_of[1]}}
    return user


def _targets(bundle: dict[str, Any], contract_id: str) -> list[dict[str, Any]]:
    targets = []
    for entry in bundle["entry"]:
        kind = entry.get("resource", {}).get("resourceType")
        if kind == "CarePlan":
            targets.append(_careplan_target(entry["fullUrl"], contract_id, None))
        elif kind in _OWNED_TYPES:
            targets.append({"reference": entry["fullUrl"]})
    return targets


def _careplan_target(careplan_url: str, contract_id: str, version: int | None) -> dict[str, Any]:
    if version is None:
        identifier = {"system": urls.ID_CONTRACT, "value": contract_id}
    else:
        identifier = {
            "system": urls.ID_CONTRACT_VERSION,
            "value": f"{contract_id}/_history/{version}",
        }
    return {"reference": careplan_url, "identifier": identifier}


def _agreements(contract: Contract) -> list[Agreement]:
    return sorted(contract.agreements, key=lambda a: a.party)


def _signers(patient_url: str, responsible_url: str) -> dict[AgreementParty, str]:
    return {
        AgreementParty.PATIENT: patient_url,
        AgreementParty.RESPONSIBLE_CLINICIAN: responsible_url,
    }


def _signatures(
    contract: Contract,
    patient_url: str,
    responsible_url: str,
    agreed: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    signers = _signers(patient_url, responsible_url)
    digests = _digests(contract, agreed)
    unit_url = _unit_url(contract)
    signatures = []
    for agreement in _agreements(contract):
        party = {"reference": signers[agreement.party]}
        signature: dict[str, Any] = {
            "type": [_SIGNATURE_TYPE],
            "when": instant(agreement.agreed_at),
            **_signed_data(digests[agreement.party]),
        }
        if agreement.attested:
            # The unit's system signs that the party agreed elsewhere, on the party's behalf.
            signature |= {
                "type": [ATTESTED_SIGNATURE],
                "who": {"reference": unit_url},
                "onBehalfOf": party,
            }
        else:
            signature["who"] = party
        signatures.append(signature)
    return signatures


def _unit_url(contract: Contract) -> str:
    """The responsible unit's Organization as the contract's transaction names it."""
    unit = identifier(contract.responsible_unit.identifier)
    return identity_url("Organization", unit["system"], unit["value"])


def _signer_urls(bundle: dict[str, Any], contract: Contract) -> tuple[str, str]:
    careplan = next(
        e["resource"]
        for e in bundle["entry"]
        if e.get("resource", {}).get("resourceType") == "CarePlan"
    )
    if contract.responsible_clinician is not None:
        return careplan["subject"]["reference"], careplan["author"]["reference"]
    return careplan["subject"]["reference"], _unit_url(contract)
