"""Resources the mapping cannot read are an UnreadableContractError naming every place, never a
crash, and never in Python's words."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import Contract
from fhir_service.contract.lifecycle import agree
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import (
    Issue,
    Sender,
    UnreadableContractError,
    contract_from_bundle,
)
from fhir_service.mapping.to_fhir import contract_to_bundle
from tests.support import PYTHON_WORDS

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"


def _bundle(name: str) -> tuple[Contract, dict[str, Any]]:
    contract = Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return contract, contract_to_bundle(contract)


def _careplan(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    return resource


def test_a_careplan_without_an_element_the_mapping_needs_is_unreadable() -> None:
    contract, bundle = _bundle("elderly-psychiatry")
    del _careplan(bundle)["subject"]

    with pytest.raises(UnreadableContractError) as caught:
        contract_from_bundle(bundle, contract.id)

    index = next(
        i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "CarePlan"
    )
    subject = f"Bundle.entry[{index}].resource.subject"
    assert caught.value.issues == (Issue(subject, "must refer to a Patient"),)


def test_content_the_contract_model_refuses_is_unreadable_without_quoting_the_data() -> None:
    contract, bundle = _bundle("knee-replacement")
    # Another system's second agreement of the same version: twice agreed by each party.
    agreement = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
    bundle["entry"].append(
        {**agreement, "fullUrl": "urn:uuid:00000000-0000-0000-0000-0000000000aa"}
    )

    with pytest.raises(UnreadableContractError) as caught:
        contract_from_bundle(bundle, contract.id)

    assert "duplicate" in str(caught.value)
    assert contract.patient.identifier.value not in str(caught.value)
    assert contract.patient.name.family not in str(caught.value)


def _entry(bundle: dict[str, Any], kind: str, nth: int = 0) -> tuple[int, dict[str, Any]]:
    found = [
        (i, e["resource"])
        for i, e in enumerate(bundle["entry"])
        if e["resource"]["resourceType"] == kind
    ]
    return found[nth]


def test_every_problem_of_a_bundle_is_named_at_its_element_in_one_error() -> None:
    _, bundle = _bundle("knee-replacement")
    plan_at, careplan = _entry(bundle, "CarePlan")
    goal_at, goal = _entry(bundle, "Goal")
    patient_at, patient = _entry(bundle, "Patient")
    careplan["title"] = " "
    careplan["activity"][0]["detail"]["code"]["coding"][0]["code"] = "juggling"
    del goal["description"]
    patient["identifier"][0]["value"] = "191212121213"
    careplan["goal"].append({"reference": "urn:uuid:00000000-0000-0000-0000-00000000dead"})

    with pytest.raises(UnreadableContractError) as caught:
        contract_from_bundle(bundle, codes=True)

    issues = {i.expression: i.message for i in caught.value.issues}
    plan = f"Bundle.entry[{plan_at}].resource"
    assert issues == {
        f"{plan}.title": "must not be empty",
        f"{plan}.goal[{len(careplan['goal']) - 1}]": (
            "refers to a Goal the Bundle does not hold; add it as an entry"
        ),
        f"Bundle.entry[{goal_at}].resource.description.text": "is required",
        f"Bundle.entry[{patient_at}].resource.identifier[0].value": (
            "invalid personnummer '191212121213': check digit is 3, expected 2"
        ),
        f"{plan}.activity[0].detail.code": "unknown activity-category code 'juggling'",
    }


_WRONG_VALUES: list[Any] = [None, 7, "x", [], {}, [{}], {"reference": "Goal/none"}]


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    places = [path] if path else []
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in children:
        if isinstance(child, dict | list):
            places += _places(child, (*path, key))
        else:
            places.append((*path, key))
    return places


@pytest.mark.parametrize("name", ["elderly-psychiatry", "knee-replacement"])
def test_any_element_of_any_type_is_read_or_refused_in_the_callers_terms(name: str) -> None:
    # Every element of a contract's Bundle, one at a time, replaced by a value of another
    # shape: the reader either reads a contract or names the places, in words a FHIR
    # integrator knows; nothing else escapes it. knee-replacement is agreed (a Provenance).
    _, bundle = _bundle(name)
    refusals: list[tuple[Any, Any, UnreadableContractError]] = []
    for place in _places(bundle):
        if len(place) < 3 or place[2] != "resource":
            continue
        for wrong in _WRONG_VALUES:
            broken = copy.deepcopy(bundle)
            parent = broken
            for step in place[:-1]:
                parent = parent[step]
            parent[place[-1]] = wrong
            try:
                contract_from_bundle(broken, codes=True)
            except UnreadableContractError as exc:
                refusals.append((place, wrong, exc))
    assert len(refusals) > 1000
    for place, wrong, refusal in refusals:
        assert refusal.issues, place
        for issue in refusal.issues:
            assert issue.expression.startswith("Bundle"), (place, issue)
            assert not PYTHON_WORDS.search(issue.message), (place, wrong, issue)


@pytest.mark.parametrize(
    ("name", "status"),
    [("elderly-psychiatry", "draft"), ("knee-replacement", "agreed")],
)
def test_without_our_status_extension_the_careplans_own_status_says_it(
    name: str, status: str
) -> None:
    contract, bundle = _bundle(name)
    _, careplan = _entry(bundle, "CarePlan")
    careplan["extension"] = [
        e for e in careplan["extension"] if e["url"] != urls.EXT_CONTRACT_STATUS
    ]

    read = contract_from_bundle(bundle)

    assert read.status == status
    assert read == contract
    # Written back, the CarePlan's status is what the sender said.
    written = contract_to_bundle(read)
    assert _entry(written, "CarePlan")[1]["status"] == careplan["status"]


def test_a_careplan_of_another_intent_or_an_unknown_status_is_not_a_contract() -> None:
    _, bundle = _bundle("elderly-psychiatry")
    plan_at, careplan = _entry(bundle, "CarePlan")
    careplan["intent"] = "option"
    careplan["status"] = "on-hold"
    careplan["extension"] = [
        e for e in careplan["extension"] if e["url"] != urls.EXT_CONTRACT_STATUS
    ]

    with pytest.raises(UnreadableContractError) as caught:
        contract_from_bundle(bundle)

    said = {i.expression: i.message for i in caught.value.issues}
    plan = f"Bundle.entry[{plan_at}].resource"
    assert said[f"{plan}.intent"].startswith(
        "is option: a contract is a CarePlan of intent plan or order"
    )
    assert said[f"{plan}.status"].startswith("a contract's CarePlan is draft, active")


def test_a_contract_naming_only_its_unit_with_an_attested_agreement_reads_back_the_same() -> None:
    contract, _ = _bundle("knee-replacement")
    attested = tuple(a.model_copy(update={"attested": True}) for a in contract.agreements)
    unit_only = Contract.model_validate(
        {
            **contract.model_dump(),
            "responsible_clinician": None,
            "responsible_unit": contract.responsible_unit,
            "agreements": attested,
        }
    )

    read = contract_from_bundle(contract_to_bundle(unit_only))

    assert read == unit_only.model_copy(update={"version": read.version})


def test_an_active_plan_without_agreement_is_attested_by_the_unit_that_sends_it() -> None:
    contract, bundle = _bundle("knee-replacement")
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Provenance"]
    careplan = _careplan(bundle)
    careplan["created"] = "2026-03-01T09:30:00+01:00"
    received = datetime(2026, 12, 5, tzinfo=UTC)

    with pytest.raises(UnreadableContractError):
        contract_from_bundle(bundle)  # from no unit: who agreed is not known
    read = contract_from_bundle(bundle, sender=Sender(contract.responsible_unit, received))

    assert read.status == "agreed"
    assert {(a.party, a.attested, a.agreed_at.isoformat()) for a in read.agreements} == {
        ("patient", True, "2026-03-01T09:30:00+01:00"),
        ("responsible-clinician", True, "2026-03-01T09:30:00+01:00"),
    }


def test_a_draft_proposal_is_a_draft_contract_and_a_plan_once_agreed() -> None:
    contract, _ = _bundle("knee-replacement")
    draft = contract.model_copy(update={"status": "draft", "agreements": ()})
    bundle = contract_to_bundle(draft)
    _careplan(bundle)["intent"] = "proposal"

    read = contract_from_bundle(bundle, sent=True)
    agreed = agree(read, contract.agreements)

    assert read.status == "draft"
    assert _careplan(contract_to_bundle(read))["intent"] == "proposal"
    assert _careplan(contract_to_bundle(agreed))["intent"] == "plan"
    _careplan(bundle)["extension"] = [
        e for e in _careplan(bundle)["extension"] if e["url"] != urls.EXT_CONTRACT_STATUS
    ]
    _careplan(bundle)["status"] = "active"
    with pytest.raises(UnreadableContractError) as caught:
        contract_from_bundle(bundle)
    assert any(i.message.startswith("is proposal:") for i in caught.value.issues)


def test_a_role_the_service_must_know_names_the_concept_map_entry_that_would_fix_it() -> None:
    _, bundle = _bundle("knee-replacement")
    roles = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "PractitionerRole"
    ]
    roles[0]["code"] = [{"coding": [{"system": "http://ehr.example/roles", "code": "ortho-7"}]}]

    with pytest.raises(UnreadableContractError) as caught:
        contract_from_bundle(bundle)

    said = [i.message for i in caught.value.issues]
    assert any(
        "add http://ehr.example/roles|ortho-7 to the ConceptMap "
        "mappings/conceptmaps/care-team-role-from-other-systems.json" in m
        for m in said
    ), said
