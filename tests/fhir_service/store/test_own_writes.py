"""The versions a store wrote itself, kept for the change feed with whom their contracts
concern: as HAPI names them, the newest only."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_service.contract import Contract, Identifier
from fhir_service.fhir import HapiClient
from fhir_service.mapping.identifier_systems import system_of
from fhir_service.store import ContractExistsError, ContractStore
from fhir_service.store.own_writes import OwnWrites, concerned
from tests.fhir_service.sync.support import watched_records
from tests.support import load_data, unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"


def _example(name: str = "knee-replacement") -> Contract:
    contract = Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text("utf-8"))
    patient = contract.patient.model_copy(
        update={
            "identifier": contract.patient.identifier.model_copy(
                update={"value": unique_personnummer()}
            )
        }
    )
    return contract.model_copy(update={"id": f"own-{patient.identifier.value}", "patient": patient})


def test_a_contract_concerns_its_patient_and_every_unit_it_names() -> None:
    # Its clinician's unit, and the municipality's, named by a professional and an activity.
    contract = _example("stroke-rehabilitation")

    whom = concerned(contract)

    def token(identifier: Identifier) -> str:
        return f"{system_of(identifier)}|{identifier.value}"

    units = {contract.responsible_unit.identifier}
    units |= {p.organization.identifier for p in contract.professionals}
    units |= {a.organization.identifier for a in contract.activities if a.organization}
    units |= {t.organization.identifier for t in contract.agreed_times}
    assert whom.contract_id == contract.id
    assert whom.patients == {token(contract.patient.identifier)}
    assert whom.responsible_unit == token(contract.responsible_unit.identifier)
    assert whom.care_units == {token(u) for u in units}
    assert len(whom.care_units) > 1


def test_each_version_hapi_names_in_its_answer_is_kept_with_the_contract() -> None:
    answer = load_data("hapi/transaction-response.json")
    contract = _example()
    own = OwnWrites()

    own.wrote(contract, answer)

    assert own.concerned_by(("CarePlan", "1372", "2")) == concerned(contract)
    assert own.concerned_by(("CareTeam", "1364", "1")) == concerned(contract)
    assert own.concerned_by(("Appointment", "1369", "1")) == concerned(contract)
    # Another version of a record written, and a version never named: not this store's.
    assert own.concerned_by(("CarePlan", "1372", "1")) is None
    assert own.concerned_by(("Appointment", "1370", "2")) is None


def test_only_the_newest_versions_are_kept() -> None:
    answer = load_data("hapi/transaction-response.json")
    first, second = _example(), _example()
    own = OwnWrites(most=8)
    own.wrote(first, answer)
    # HAPI's answer to the next write, relative and absolute, as a server may give either.
    moved = {
        "entry": [
            {"response": {"status": "200 OK", "location": "CarePlan/1372/_history/3"}},
            {
                "response": {
                    "status": "200 OK",
                    "location": "http://hapi.example/fhir/Appointment/1371/_history/2",
                }
            },
        ]
    }

    own.wrote(second, moved)

    assert own.concerned_by(("CarePlan", "1372", "3")) == concerned(second)
    assert own.concerned_by(("Appointment", "1371", "2")) == concerned(second)
    assert own.concerned_by(("CarePlan", "1372", "2")) == concerned(first)
    assert own.concerned_by(("RelatedPerson", "1363", "1")) is None, "the oldest went first"
    assert own.concerned_by(("CareTeam", "1364", "1")) is None


async def test_a_created_contract_is_kept_by_every_version_hapi_gave_its_watched_records(
    hapi: HapiClient,
) -> None:
    store = ContractStore(hapi)
    contract = _example()

    created = await store.create(contract)

    records = await watched_records(hapi, created.id)
    assert {kind for kind, _, _ in records} >= {"CarePlan", "CareTeam", "Appointment"}
    for key in records:
        kept = store.own_writes.concerned_by(key)
        assert kept is not None, key
        assert kept.contract_id == created.id


async def test_a_contract_that_was_there_already_is_not_kept_as_this_stores_write(
    hapi: HapiClient,
) -> None:
    contract = _example()
    first = await ContractStore(hapi).create(contract)
    store = ContractStore(hapi)

    with pytest.raises(ContractExistsError):
        await store.create(contract)

    for key in await watched_records(hapi, first.id):
        assert store.own_writes.concerned_by(key) is None, key
