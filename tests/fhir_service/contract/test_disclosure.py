"""What of a contract each reader is shown: the responsible unit all, others agreed content."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_service.contract import Confidentiality, Contract, ContractStatus, Identifier
from fhir_service.contract.disclosure import disclose

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
RESTRICTED = Confidentiality.RESTRICTED


def _example(name: str = "stroke-rehabilitation") -> Contract:
    return Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text("utf-8"))


def _unit(contract: Contract) -> Identifier:
    return contract.responsible_clinician.organization.identifier


MUNICIPALITY = Identifier(kind="hsa-id", value="SE2120000662-1001")


@pytest.mark.parametrize("reader", ["patient", "other unit"])
def test_a_draft_is_withheld_whole_from_everyone_but_its_unit(reader: str) -> None:
    draft = _example().model_copy(update={"status": ContractStatus.DRAFT, "agreements": ()})
    unit = None if reader == "patient" else MUNICIPALITY

    seen = disclose(draft, unit)
    own = disclose(draft, _unit(draft))

    assert seen.contract is None
    assert seen.withheld
    assert own.contract == draft
    assert not own.withheld


@pytest.mark.parametrize("label", [Confidentiality.RESTRICTED, Confidentiality.VERY_RESTRICTED])
def test_a_contract_labelled_restricted_is_withheld_whole(label: Confidentiality) -> None:
    contract = _example().model_copy(update={"confidentiality": label})

    assert disclose(contract, None).contract is None
    assert disclose(contract, MUNICIPALITY).withheld
    assert disclose(contract, _unit(contract)).contract == contract


def test_restricted_goals_and_times_are_left_out_and_the_rest_is_shown() -> None:
    contract = _example()
    goals = (contract.goals[0].model_copy(update={"confidentiality": RESTRICTED}),)
    times = (contract.agreed_times[1].model_copy(update={"confidentiality": RESTRICTED}),)
    labelled = contract.model_copy(
        update={
            "goals": goals + contract.goals[1:],
            "agreed_times": contract.agreed_times[:1] + times + contract.agreed_times[2:],
        }
    )

    seen = disclose(labelled, None)

    assert seen.withheld
    assert seen.contract is not None
    assert seen.contract.goals == contract.goals[1:]
    assert seen.contract.agreed_times == contract.agreed_times[:1] + contract.agreed_times[2:]
    assert seen.contract.activities == contract.activities
    assert disclose(labelled, _unit(labelled)).contract == labelled


def test_an_agreed_contract_without_labels_is_shown_whole_and_nothing_is_said_withheld() -> None:
    contract = _example()

    seen = disclose(contract, None)

    assert seen.contract == contract
    assert not seen.withheld


def test_a_restricted_activity_is_left_out_for_the_patient_and_other_units() -> None:
    contract = _example()
    hidden = contract.activities[0].model_copy(update={"confidentiality": RESTRICTED})
    labelled = contract.model_copy(update={"activities": (hidden, *contract.activities[1:])})

    for reader in (None, MUNICIPALITY):
        seen = disclose(labelled, reader)
        assert seen.withheld
        assert seen.contract is not None
        assert seen.contract.activities == contract.activities[1:]
    assert disclose(labelled, _unit(labelled)).contract == labelled
