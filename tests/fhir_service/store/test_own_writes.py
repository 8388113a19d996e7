"""The versions a store wrote itself, kept for the change feed: as HAPI names them, the newest
only."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_service.contract import Contract
from fhir_service.fhir import HapiClient
from fhir_service.store import ContractExistsError, ContractStore
from fhir_service.store.own_writes import OwnWrites
from tests.fhir_service.sync.support import watched_records
from tests.support import load_data, unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"


def _example() -> Contract:
    contract = Contract.model_validate_json((EXAMPLES / "knee-replacement.json").read_text("utf-8"))
    patient = contract.patient.model_copy(
        update={
            "identifier": contract.patient.identifier.model_copy(
                update={"value": unique_personnummer()}
            )
        }
    )
    return contract.model_copy(update={"id": f"own-{patient.identifier.value}", "patient": patient})


def test_each_version_hapi_names_in_its_answer_is_kept_with_the_contract() -> None:
    answer = load_data("hapi/transaction-response.json")
    contract = _example()
    own = OwnWrites()

    own.wrote(contract, answer)

    assert own.contract_of(("CarePlan", "1372", "2")) is contract
    assert own.contract_of(("CareTeam", "1364", "1")) is contract
    assert own.contract_of(("Appointment", "1369", "1")) is contract
    # Another version of a record written, and a version never named: not this store's.
    assert own.contract_of(("CarePlan", "1372", "1")) is None
    assert own.contract_of(("Appointment", "1370", "2")) is None


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

    assert own.contract_of(("CarePlan", "1372", "3")) is second
    assert own.contract_of(("Appointment", "1371", "2")) is second
    assert own.contract_of(("CarePlan", "1372", "2")) is first
    assert own.contract_of(("RelatedPerson", "1363", "1")) is None, "the oldest went first"
    assert own.contract_of(("CareTeam", "1364", "1")) is None


async def test_a_created_contract_is_kept_by_every_version_hapi_gave_its_watched_records(
    hapi: HapiClient,
) -> None:
    store = ContractStore(hapi)
    contract = _example()

    created = await store.create(contract)

    records = await watched_records(hapi, created.id)
    assert {kind for kind, _, _ in records} >= {"CarePlan", "CareTeam", "Appointment"}
    for key in records:
        kept = store.own_writes.contract_of(key)
        assert kept is not None, key
        assert kept.id == created.id


async def test_a_contract_that_was_there_already_is_not_kept_as_this_stores_write(
    hapi: HapiClient,
) -> None:
    contract = _example()
    first = await ContractStore(hapi).create(contract)
    store = ContractStore(hapi)

    with pytest.raises(ContractExistsError):
        await store.create(contract)

    for key in await watched_records(hapi, first.id):
        assert store.own_writes.contract_of(key) is None, key
