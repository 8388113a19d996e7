"""The coherent plan laid out from several units' contracts with one patient."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fhir_service.contract import (
    ActivityOwner,
    Contract,
    ContractStatus,
    Identifier,
    Period,
)
from fhir_service.contract.plan import CoherentPlan, coherent_plan
from tests.time_types import seed_catalogue

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
# Between the stroke example's two booked times, while its care contact's period runs.
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def _example(name: str) -> Contract:
    return Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text("utf-8"))


def _same_patient(contract: Contract, like: Contract, new_id: str) -> Contract:
    return contract.model_copy(update={"id": new_id, "patient": like.patient})


def _plan(*contracts: Contract, withheld: bool = False) -> CoherentPlan:
    return coherent_plan(contracts[0].patient.identifier, contracts, now=NOW, withheld=withheld)


def test_activities_of_every_contract_are_grouped_by_owner_the_patients_first() -> None:
    stroke = _example("stroke-rehabilitation")
    knee = _same_patient(_example("knee-replacement"), stroke, "knee-1")

    plan = _plan(stroke, knee)

    owners = [group.owner for group in plan.activities]
    assert owners[0] is ActivityOwner.PATIENT
    assert len(owners) == len(set(owners))
    planned = [(a.contract_id, a.key) for g in plan.activities for a in g.activities]
    expected = [(c.id, a.key) for c in (stroke, knee) for a in c.activities]
    assert sorted(planned) == sorted(expected)
    assert [c.id for c in plan.contracts] == [stroke.id, knee.id]
    assert plan.name == stroke.patient.name


def test_only_times_still_to_come_are_upcoming_soonest_first_undated_last() -> None:
    stroke = _example("stroke-rehabilitation")

    plan = _plan(stroke)

    keys = [t.key for t in plan.upcoming_times]
    booked_later, proposed = stroke.agreed_times[1], stroke.agreed_times[2]
    assert keys == [booked_later.key, proposed.key]
    assert all(t.contract_id == stroke.id for t in plan.upcoming_times)


def test_care_contacts_are_the_ones_whose_period_holds_today() -> None:
    stroke = _example("stroke-rehabilitation")
    contact = stroke.care_contacts[0]
    ended = contact.model_copy(
        update={
            "period": Period(start=NOW.date().replace(month=1), end=NOW.date().replace(month=2))
        }
    )
    with_ended = stroke.model_copy(update={"care_contacts": (contact, ended)})

    plan = _plan(with_ended)

    assert [c.professional for c in plan.care_contacts] == [contact.professional]


def test_contracts_not_in_force_stay_out_and_the_withheld_flag_is_passed_on() -> None:
    stroke = _example("stroke-rehabilitation")
    ended = _same_patient(_example("knee-replacement"), stroke, "knee-ended").model_copy(
        update={"status": ContractStatus.ENDED, "agreements": ()}
    )

    plan = _plan(stroke, ended, withheld=True)

    assert [c.id for c in plan.contracts] == [stroke.id]
    assert plan.withheld
    assert {g.contract_id for g in plan.goals} == {stroke.id}


def test_a_patient_without_contracts_in_force_has_an_empty_plan() -> None:
    patient = Identifier(kind="personnummer", value="191212121212")

    plan = coherent_plan(patient, [], now=NOW, withheld=False)

    assert plan.patient == patient
    assert plan.name is None
    assert plan.contracts == plan.activities == plan.goals == ()


def test_times_are_named_by_their_units_types_and_booked_ones_say_their_rules() -> None:
    stroke = _example("stroke-rehabilitation")
    typed = tuple(
        t.model_copy(update={"time_type": t.key}) if t.key != "ot-home-visit" else t
        for t in stroke.agreed_times
    )
    types = seed_catalogue()

    plan = coherent_plan(
        stroke.patient.identifier,
        [stroke.model_copy(update={"agreed_times": typed})],
        now=NOW,
        withheld=False,
        types=types,
    )

    booked, proposed = plan.upcoming_times
    assert booked.time_type_names is not None
    assert booked.time_type_names["en"] == "Follow-up with the stroke nurse"
    assert (
        booked.online_rules
        == types.offered(booked.organization.identifier, "nurse-followup").online_rules
    )  # type: ignore[union-attr]
    # A time not yet booked is named, but has no rules of its own yet.
    assert proposed.time_type_names is not None
    assert proposed.online_rules is None
