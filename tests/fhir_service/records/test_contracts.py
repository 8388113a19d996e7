"""The JSON facade's contracts as one caller sees them, against the real HAPI: the caller's walls
are applied and every contract touched or refused is named in the audit record, by the service
itself, whichever route calls it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_service import servicedb
from fhir_service.audit import contract_entities
from fhir_service.booking import TimeTypeCatalogue
from fhir_service.contract import Contract, ContractStatus, Identifier, IdentifierKind
from fhir_service.errors import (
    PreconditionFailedError,
    RecordConflictError,
    UnprocessableError,
    VersionRequiredError,
)
from fhir_service.fhir import HapiClient
from fhir_service.mapping import Author
from fhir_service.records import CallerContracts, ContractCriteria, Replays
from fhir_service.security import AccessDeniedError, Compartment, Denial, Requirement
from fhir_service.servicedb import IdempotencyStore
from fhir_service.store import Change, ContractNotFoundError, ContractStore
from tests.fhir_service.records.support import RecordedWitness, access_within
from tests.support import unique_hsa_id, unique_personnummer

EXAMPLE = Path(__file__).parents[3] / "profiles/examples/contracts/elderly-psychiatry.json"
_WITHHELD = "withheld from this reader: a draft, or labelled restricted"


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[IdempotencyStore]:
    engine = servicedb.make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    servicedb.migrate(engine)
    yield IdempotencyStore(engine)
    engine.dispose()


@pytest.fixture
def store(hapi: HapiClient) -> ContractStore:
    return ContractStore(hapi)


def _contract() -> Contract:
    contract = Contract.model_validate_json(EXAMPLE.read_text("utf-8"))
    data = contract.model_dump(mode="json")
    data["id"] = f"caller-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    data["responsible_clinician"]["organization"]["identifier"]["value"] = unique_hsa_id()
    data.pop("responsible_unit", None)
    return Contract.model_validate(data)


def _unit(contract: Contract) -> Compartment:
    return Compartment(organization=contract.responsible_unit.identifier)


def _patient(contract: Contract) -> Compartment:
    return Compartment(patient=contract.patient.identifier)


def _caller(
    store: ContractStore,
    keys: IdempotencyStore,
    walls: Compartment,
    witness: RecordedWitness | None = None,
) -> tuple[CallerContracts, RecordedWitness]:
    seen = witness or RecordedWitness()
    access = access_within(walls, Requirement("CarePlan", "r"))

    def change() -> Change:
        return Change(Author(("tests", "someone"), write_key=seen.write_key), walls)

    replays = Replays(keys, seen, "tests someone", "instance")
    catalogue = TimeTypeCatalogue(store.hapi)
    return CallerContracts(access, seen, change, store, replays, catalogue), seen


async def test_a_unit_cannot_create_another_units_contract_and_the_record_says_whose(
    store: ContractStore, keys: IdempotencyStore
) -> None:
    contract = _contract()
    other = Compartment(organization=Identifier(kind=IdentifierKind.HSA_ID, value=unique_hsa_id()))
    contracts, seen = _caller(store, keys, other)

    with pytest.raises(AccessDeniedError) as refused:
        await contracts.create(contract)

    assert refused.value.refusal == Denial.OUTSIDE_COMPARTMENT.value
    assert seen.refusals == [Denial.OUTSIDE_COMPARTMENT.value]
    patient, entity = contract_entities(contract)
    assert (seen.patients, seen.entities) == ([patient], [entity])
    with pytest.raises(ContractNotFoundError):
        await store.read(contract.id)


async def test_a_contract_outside_the_walls_or_withheld_is_absent_and_the_record_says_why(
    store: ContractStore, keys: IdempotencyStore
) -> None:
    contract = _contract()
    await _caller(store, keys, _unit(contract))[0].create(contract)
    stranger = Compartment(
        patient=Identifier(kind=IdentifierKind.PERSONNUMMER, value=unique_personnummer())
    )
    outside, seen_outside = _caller(store, keys, stranger)
    patient, seen_patient = _caller(store, keys, _patient(contract))

    with pytest.raises(ContractNotFoundError):
        await outside.read(contract.id)
    # A draft is the care unit's until it is agreed.
    with pytest.raises(ContractNotFoundError):
        await patient.read(contract.id)

    assert seen_outside.refusals == [Denial.OUTSIDE_COMPARTMENT.value]
    assert seen_patient.refusals == [_WITHHELD]
    named = contract_entities(contract)[1]
    assert seen_outside.entities == seen_patient.entities == [named]


async def test_a_search_for_another_patient_is_refused_and_a_units_own_is_named(
    store: ContractStore, keys: IdempotencyStore
) -> None:
    contract = _contract()
    await _caller(store, keys, _unit(contract))[0].create(contract)
    patient, seen_patient = _caller(store, keys, _patient(contract))
    unit, seen_unit = _caller(store, keys, _unit(contract))

    with pytest.raises(AccessDeniedError):
        await patient.search(ContractCriteria(patient=("personnummer", unique_personnummer())))
    found = await unit.search(ContractCriteria())

    assert seen_patient.refusals == [Denial.OUTSIDE_COMPARTMENT.value]
    assert [c.id for c in found.contracts] == [contract.id]
    assert seen_unit.entities == [contract_entities(contract)[1]]


async def test_a_change_names_the_version_it_is_based_on(
    store: ContractStore, keys: IdempotencyStore
) -> None:
    contract = _contract()
    unit, _ = _caller(store, keys, _unit(contract))
    await unit.create(contract)

    with pytest.raises(VersionRequiredError) as missing:
        await unit.step(contract.id, ContractStatus.REVOKED, None)
    with pytest.raises(PreconditionFailedError) as garbled:
        await unit.step(contract.id, ContractStatus.REVOKED, "three")
    with pytest.raises(RecordConflictError) as stale:
        await unit.step(contract.id, ContractStatus.REVOKED, 'W/"7"')

    assert missing.value.issues[0]["expression"] == ["If-Match"]
    assert garbled.value.issues[0]["expression"] == ["If-Match"]
    assert stale.value.current_version == 1
    assert (await store.read(contract.id)).status is ContractStatus.DRAFT


async def test_unknown_codes_are_refused_each_at_its_place_before_hapi_is_asked(
    store: ContractStore, keys: IdempotencyStore
) -> None:
    data = _contract().model_dump(mode="json")
    data["activities"][0]["category"] = "no-such-category"
    data["activities"][1]["category"] = "nor-this-one"
    contract = Contract.model_validate(data)
    unit, _ = _caller(store, keys, _unit(contract))

    with pytest.raises(UnprocessableError) as refused:
        await unit.create(contract)

    places = [i["expression"][0] for i in refused.value.issues]
    assert places == ["$.activities[0].category", "$.activities[1].category"]
    with pytest.raises(ContractNotFoundError):
        await store.read(contract.id)


async def test_a_retry_that_runs_into_its_keys_earlier_write_gets_that_write(
    store: ContractStore, keys: IdempotencyStore
) -> None:
    # The first try wrote, tagged with its key, and its answer was lost; the retry with the
    # same key runs into the contract it made and answers as the first would have.
    contract = _contract()
    first = RecordedWitness(write_key=f"key-{uuid.uuid4().hex}")
    await _caller(store, keys, _unit(contract), first)[0].create(contract)
    retry = RecordedWitness(write_key=first.write_key)
    stranger = RecordedWitness(write_key=f"key-{uuid.uuid4().hex}")

    again = await _caller(store, keys, _unit(contract), retry)[0].create(contract)
    with pytest.raises(RecordConflictError):
        await _caller(store, keys, _unit(contract), stranger)[0].create(contract)

    assert again.replayed
    assert (again.contract.id, again.contract.version) == (contract.id, 1)
    assert retry.entities == [contract_entities(contract)[1]]


async def test_a_keys_first_answer_is_kept_and_given_again(
    store: ContractStore, keys: IdempotencyStore
) -> None:
    contract = _contract()
    unit, seen = _caller(store, keys, _unit(contract))

    first = await unit.replays.claim("POST /contracts", "k-1", b"body")
    await unit.replays.answered(201, '{"id": "x"}')
    again = await _caller(store, keys, _unit(contract))[0].replays.claim(
        "POST /contracts", "k-1", b"body"
    )

    assert first is None
    assert seen.write_key is not None
    assert again is not None
    assert (again.status, again.body) == (201, '{"id": "x"}')
