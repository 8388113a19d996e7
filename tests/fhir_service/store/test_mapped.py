"""Contracts kept by the answers they were read from: the same answer is not read twice, and
any change to any record of it is read anew. Whether a contract was read anew is told by counting
the readings (``contract_from_bundle``): a kept one comes back as an equal copy."""

from __future__ import annotations

import asyncio
import copy
import uuid
from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import Contract, Identifier, IdentifierKind
from fhir_service.fhir import HapiClient
from fhir_service.mapping.from_fhir import UnreadableContractError
from fhir_service.mapping.to_fhir import contract_to_bundle
from fhir_service.store import ContractStore, mapped
from fhir_service.store.mapped import MappedContracts
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
CONCURRENT = 20


def _example(name: str, contract_id: str | None = None) -> Contract:
    contract = Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return contract.model_copy(update={"id": contract_id or f"mapped-{uuid.uuid4().hex}"})


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the contracts read out of an answer, in order, from now on."""
    read: list[str] = []
    reading = mapped.contract_from_bundle

    def counted(bundle: dict[str, Any], contract_id: str) -> Contract:
        read.append(contract_id)
        return reading(bundle, contract_id)

    monkeypatch.setattr(mapped, "contract_from_bundle", counted)
    return read


def _goal(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal")


def test_the_same_answer_gives_the_contract_read_the_first_time(readings: list[str]) -> None:
    contract = _example("stroke-rehabilitation")
    bundle = contract_to_bundle(contract)
    kept = MappedContracts()

    first = kept.of(bundle).contract(contract.id)
    # A new answer with the same entries, as HAPI gives every time the records are unchanged.
    second = kept.of(copy.deepcopy(bundle)).contract(contract.id)

    assert first == contract
    assert second == first
    assert readings == [contract.id]
    # Each reader has a contract of its own: what one changes, no other sees.
    assert second is not first


def test_a_change_to_any_record_is_read_anew(readings: list[str]) -> None:
    contract = _example("stroke-rehabilitation")
    bundle = contract_to_bundle(contract)
    kept = MappedContracts()
    first = kept.of(bundle).contract(contract.id)
    changed = copy.deepcopy(bundle)
    # Only the Goal changes; the CarePlan that refers to it stays as it was.
    _goal(changed)["description"]["text"] = "Gå 200 meter utan stöd"

    second = kept.of(changed).contract(contract.id)

    assert readings == [contract.id, contract.id]
    assert "Gå 200 meter utan stöd" in [g.description for g in second.goals]
    assert "Gå 200 meter utan stöd" not in [g.description for g in first.goals]


def test_each_contract_of_a_page_is_kept_under_its_own_id(readings: list[str]) -> None:
    one, other = _example("stroke-rehabilitation"), _example("knee-replacement")
    page = contract_to_bundle(one)
    page["entry"] += contract_to_bundle(other)["entry"]
    kept = MappedContracts()

    read = kept.of(page)

    assert read.contract(one.id) == one
    assert read.contract(other.id) == other
    assert kept.of(copy.deepcopy(page)).contract(other.id) == other
    assert kept.of(copy.deepcopy(page)).contract(one.id) == one
    assert readings == [one.id, other.id]


def test_only_the_newest_are_kept(readings: list[str]) -> None:
    kept = MappedContracts(most=2)
    contracts = [_example("knee-replacement") for _ in range(3)]
    bundles = [contract_to_bundle(c) for c in contracts]
    first = [kept.of(b).contract(c.id) for b, c in zip(bundles, contracts, strict=True)]

    newest = kept.of(bundles[2]).contract(contracts[2].id)
    oldest = kept.of(bundles[0]).contract(contracts[0].id)

    # The oldest was let go for the third, and is read anew; the newest is still kept.
    assert readings == [c.id for c in contracts] + [contracts[0].id]
    assert newest == first[2]
    assert oldest == first[0]


async def test_in_the_event_loop_a_contract_is_kept_at_its_next_turn_not_before_its_answer(
    readings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    contract = _example("stroke-rehabilitation")
    bundle = contract_to_bundle(contract)
    kept = MappedContracts()
    pickled: list[str] = []
    pickling = mapped.pickle.dumps

    def counted(value: Contract, protocol: int) -> bytes:
        pickled.append(value.id)
        return pickling(value, protocol=protocol)

    monkeypatch.setattr(mapped.pickle, "dumps", counted)

    first = kept.of(bundle).contract(contract.id)
    # The reader goes on with its answer; the contract is not pickled meanwhile.
    assert pickled == []
    await asyncio.sleep(0)
    again = kept.of(copy.deepcopy(bundle)).contract(contract.id)

    assert pickled == [contract.id]
    assert readings == [contract.id]
    assert again == first == contract


def test_a_contract_that_does_not_read_is_not_kept() -> None:
    contract = _example("knee-replacement")
    bundle = contract_to_bundle(contract)
    careplan = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    del careplan["subject"]
    kept = MappedContracts()

    for _ in range(2):
        with pytest.raises(UnreadableContractError):
            kept.of(bundle).contract(contract.id)


async def test_a_record_changed_in_hapi_alone_is_seen_on_the_next_read(
    hapi: HapiClient, readings: list[str]
) -> None:
    store = ContractStore(hapi)
    contract = _example("stroke-rehabilitation")
    await store.create(contract)
    first = await store.read(contract.id)
    assert await store.read(contract.id) == first
    assert readings == [contract.id]  # HAPI's answer is the same: kept
    # Another system changes one Goal straight in HAPI: the CarePlan keeps its version.
    records = await store.stored_records(contract.id)
    goal = _goal(records)
    goal["description"]["text"] = "Gå i trappor utan stöd"
    await hapi.update(goal)

    read = await store.read(contract.id)

    assert "Gå i trappor utan stöd" in [g.description for g in read.goals]
    assert read.version == first.version


async def test_a_search_page_sees_a_record_changed_in_hapi_alone(
    hapi: HapiClient, readings: list[str]
) -> None:
    store = ContractStore(hapi)
    patient = Identifier(kind=IdentifierKind.PERSONNUMMER, value=unique_personnummer())
    contract = _example("knee-replacement")
    contract = contract.model_copy(
        update={"patient": contract.patient.model_copy(update={"identifier": patient})}
    )
    await store.create(contract)
    (first,) = (await store.search(patient=patient)).contracts
    assert (await store.search(patient=patient)).contracts == (first,)
    assert readings == [contract.id]
    goal = _goal(await store.stored_records(contract.id))
    goal["description"]["text"] = "Böja knät 90 grader"
    await hapi.update(goal)

    (read,) = (await store.search(patient=patient)).contracts

    assert "Böja knät 90 grader" in [g.description for g in read.goals]


async def test_concurrent_readers_after_a_change_all_see_it(hapi: HapiClient) -> None:
    store = ContractStore(hapi)
    contract = _example("stroke-rehabilitation")
    await store.create(contract)
    before = await asyncio.gather(*(store.read(contract.id) for _ in range(CONCURRENT)))
    goal = _goal(await store.stored_records(contract.id))
    goal["description"]["text"] = "Cykla 20 minuter"
    await hapi.update(goal)

    after = await asyncio.gather(*(store.read(contract.id) for _ in range(CONCURRENT)))

    assert all("Cykla 20 minuter" not in [g.description for g in c.goals] for c in before)
    assert all("Cykla 20 minuter" in [g.description for g in c.goals] for c in after)
