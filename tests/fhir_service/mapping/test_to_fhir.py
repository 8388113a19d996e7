"""The shape of the transaction Bundle: what is created once, what is updated, what is signed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import Contract, ContractStatus
from fhir_service.contract.lifecycle import revise
from fhir_service.mapping import from_fhir, urls
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.mapping.tables import UnknownCodeError
from fhir_service.mapping.to_fhir import CAREPLAN_STATUS, contract_to_bundle

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
SHARED = {"Patient", "Practitioner", "PractitionerRole", "Organization", "HealthcareService"}
OWNED = {"CarePlan", "CareTeam", "Goal", "Appointment", "RelatedPerson"}


def _contract(name: str = "knee-replacement") -> Contract:
    return Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _of_type(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_shared_records_are_conditional_creates_and_owned_ones_conditional_updates(
    example: Path,
) -> None:
    bundle = contract_to_bundle(Contract.model_validate_json(example.read_text()))

    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        resource, request = entry["resource"], entry["request"]
        identifier = resource.get("identifier", [{}])[0]
        query = f"identifier={identifier.get('system')}|{identifier.get('value')}"
        if resource["resourceType"] in SHARED:
            assert request == {
                "method": "POST",
                "url": resource["resourceType"],
                "ifNoneExist": query,
            }
        elif resource["resourceType"] in OWNED:
            assert request == {"method": "PUT", "url": f"{resource['resourceType']}?{query}"}
        else:
            assert resource["resourceType"] == "Provenance"
            assert request["method"] == "POST"
            assert request["ifNoneExist"].startswith(f"_tag={urls.TAG_AGREEMENT}|")
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(full_urls) == len(set(full_urls)), "each record appears once"


def test_one_contract_always_maps_to_the_same_bundle() -> None:
    assert contract_to_bundle(_contract()) == contract_to_bundle(_contract())


def test_national_identifiers_use_the_national_systems() -> None:
    contract = _contract()
    bundle = contract_to_bundle(contract)

    patient = _of_type(bundle, "Patient")[0]["resource"]
    assert patient["identifier"] == [
        {"system": system_for(contract.patient.identifier.kind), "value": "191212121212"}
    ]
    assert (
        patient["identifier"][0]["system"] == "http://electronichealth.se/identifier/personnummer"
    )
    practitioner_systems = {
        e["resource"]["identifier"][0]["system"] for e in _of_type(bundle, "Practitioner")
    }
    assert practitioner_systems == {"urn:oid:1.2.752.29.4.19"}


@pytest.mark.parametrize(
    ("status", "careplan_status"),
    [
        ("draft", "draft"),
        ("agreed", "active"),
        ("revised", "active"),
        ("completed", "completed"),
        ("ended", "revoked"),
        ("revoked", "revoked"),
    ],
)
def test_contract_status_maps_to_careplan_status_and_is_kept_exactly(
    status: str, careplan_status: str
) -> None:
    data = _contract().model_dump()
    data["status"] = status
    if status != "agreed":
        data["agreements"] = ()
    careplan = _of_type(contract_to_bundle(Contract.model_validate(data)), "CarePlan")[0]

    assert careplan["resource"]["status"] == careplan_status
    assert CAREPLAN_STATUS[ContractStatus(status)] == careplan_status
    extension = careplan["resource"]["extension"][0]
    assert extension["url"] == urls.EXT_CONTRACT_STATUS
    assert extension["valueCoding"]["code"] == status


def test_agreed_contract_carries_a_provenance_signed_by_both() -> None:
    contract = _contract()
    bundle = contract_to_bundle(contract)

    (entry,) = _of_type(bundle, "Provenance")
    careplan_url = _of_type(bundle, "CarePlan")[0]["fullUrl"]
    provenance = entry["resource"]
    identifier = {"system": urls.ID_CONTRACT, "value": contract.id}
    assert provenance["target"] == [{"reference": careplan_url, "identifier": identifier}]
    patient_url = _of_type(bundle, "Patient")[0]["fullUrl"]
    signers = {s["who"]["reference"] for s in provenance["signature"]}
    assert patient_url in signers
    assert len(signers) == 2
    assert sorted(s["when"] for s in provenance["signature"]) == sorted(
        a.agreed_at.isoformat() for a in contract.agreements
    )


def test_a_contract_naming_only_its_unit_has_no_author_and_the_unit_signs_its_agreement() -> None:
    contract = _contract().model_copy(update={"responsible_clinician": None})
    contract = Contract.model_validate(contract.model_dump())

    bundle = contract_to_bundle(contract)

    careplan = _of_type(bundle, "CarePlan")[0]["resource"]
    unit_url = next(
        e["valueReference"]["reference"]
        for e in careplan["extension"]
        if e["url"] == urls.EXT_RESPONSIBLE_UNIT
    )
    assert "author" not in careplan
    assert unit_url in {e["fullUrl"] for e in _of_type(bundle, "Organization")}
    (entry,) = _of_type(bundle, "Provenance")
    signers = {s["who"]["reference"] for s in entry["resource"]["signature"]}
    assert signers == {_of_type(bundle, "Patient")[0]["fullUrl"], unit_url}
    assert "policy" not in entry["resource"]


def test_an_attested_agreement_is_signed_by_the_unit_on_each_partys_behalf() -> None:
    contract = _contract()
    attested = tuple(a.model_copy(update={"attested": True}) for a in contract.agreements)

    signed = _of_type(contract_to_bundle(contract), "Provenance")[0]
    bundle = contract_to_bundle(contract.model_copy(update={"agreements": attested}))

    (entry,) = _of_type(bundle, "Provenance")
    provenance = entry["resource"]
    role_url = _of_type(bundle, "CarePlan")[0]["resource"]["author"]["reference"]
    unit = contract.responsible_unit.identifier
    unit_url = next(
        e["fullUrl"]
        for e in _of_type(bundle, "Organization")
        if e["resource"]["identifier"][0]["value"] == unit.value
    )
    assert provenance["policy"] == [urls.POLICY_AGREEMENT_ATTESTED]
    assert {s["type"][0]["code"] for s in provenance["signature"]} == {"1.2.840.10065.1.12.1.5"}
    assert {s["who"]["reference"] for s in provenance["signature"]} == {unit_url}
    assert {s["onBehalfOf"]["reference"] for s in provenance["signature"]} == {
        _of_type(bundle, "Patient")[0]["fullUrl"],
        role_url,
    }
    # Attested or signed here, the same agreement is another record.
    assert entry["fullUrl"] != signed["fullUrl"]


def test_a_contract_under_revision_carries_no_provenance() -> None:
    bundle = contract_to_bundle(revise(_contract()))

    assert _of_type(bundle, "Provenance") == []


def test_activities_name_their_owner_and_performer() -> None:
    bundle = contract_to_bundle(_contract())
    careplan = _of_type(bundle, "CarePlan")[0]["resource"]
    patient_url = _of_type(bundle, "Patient")[0]["fullUrl"]
    organization_url = _of_type(bundle, "Organization")[0]["fullUrl"]

    details = {a["id"]: a["detail"] for a in careplan["activity"] if "detail" in a}

    assert details["walk"]["performer"] == [{"reference": patient_url}]
    assert details["surgery"]["performer"] == [{"reference": organization_url}]
    assert details["knee-exercise"]["scheduledTiming"]["repeat"] == {
        "frequency": 2,
        "period": 1,
        "periodUnit": "d",
        "boundsPeriod": {"start": "2026-11-02", "end": "2027-02-28"},
    }
    owners = {key: d["extension"][0]["valueCoding"]["code"] for key, d in details.items()}
    assert owners == {"knee-exercise": "patient", "walk": "patient", "surgery": "care-unit"}
    references = [a["reference"]["reference"] for a in careplan["activity"] if "reference" in a]
    assert references == [e["fullUrl"] for e in _of_type(bundle, "Appointment")]


def test_an_unknown_code_stops_the_mapping() -> None:
    data = _contract().model_dump()
    data["activities"][0]["category"] = "yoga"

    with pytest.raises(UnknownCodeError, match="unknown activity-category code 'yoga'"):
        contract_to_bundle(Contract.model_validate(data))


def test_a_new_contract_writes_its_own_records_as_conditional_creates() -> None:
    bundle = contract_to_bundle(_contract(), new=True)

    for entry in bundle["entry"]:
        request = entry["request"]
        assert request["method"] == "POST"
        assert "ifNoneExist" in request


def test_a_versioned_write_puts_the_careplan_by_id_with_if_match() -> None:
    bundle = contract_to_bundle(_contract(), if_version=("42", 7))

    (careplan,) = _of_type(bundle, "CarePlan")
    assert careplan["request"] == {"method": "PUT", "url": "CarePlan/42", "ifMatch": 'W/"7"'}
    assert careplan["resource"]["id"] == "42"
    others = [e for e in bundle["entry"] if e is not careplan]
    assert all("ifMatch" not in e["request"] for e in others)


def test_an_agreement_to_other_contents_is_another_provenance() -> None:
    contract = _contract()
    changed = contract.model_copy(update={"title": "Knäprotes, reviderad"})

    def tag(c: Contract) -> str:
        (entry,) = _of_type(contract_to_bundle(c), "Provenance")
        return str(entry["request"]["ifNoneExist"])

    assert tag(contract) == tag(contract)
    assert tag(contract) != tag(changed)


@pytest.mark.parametrize(
    ("name", "language", "said", "narrative"),
    [
        ("knee-replacement", None, "sv", "sv"),
        ("norwegian-individual-plan", None, "nb", "nb"),
        ("norwegian-individual-plan", "nn", "nn", "nb"),
        ("knee-replacement", "en-GB", "en-GB", "en"),
        ("norwegian-individual-plan", "de", "de", "sv"),
    ],
)
def test_the_careplan_says_the_contracts_language_and_its_narrative_speaks_it(
    name: str, language: str | None, said: str, narrative: str
) -> None:
    data = _contract(name).model_dump(mode="json", exclude={"language"})
    if language is not None:
        data["language"] = language
    contract = Contract.model_validate(data)

    # The server-wide language (here sv) only stands in where we write no narrative (German).
    careplan = _of_type(contract_to_bundle(contract, "sv"), "CarePlan")[0]["resource"]

    assert careplan["language"] == said
    assert careplan["text"]["div"].startswith(
        f'<div xmlns="http://www.w3.org/1999/xhtml" lang="{narrative}" class="patient-contract">'
    )
    assert from_fhir.contract_from_bundle(contract_to_bundle(contract)).language == said
