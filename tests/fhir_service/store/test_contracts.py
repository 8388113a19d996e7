"""The contract store against the real HAPI: whole writes, no duplicates, no stale overwrites."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fhir_service.contract import (
    Agreement,
    AgreementParty,
    Confidentiality,
    Contract,
    ContractStatus,
)
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.metrics import Metrics
from fhir_service.store import (
    ContractExistsError,
    ContractNotEditableError,
    ContractNotFoundError,
    ContractStore,
    StaleVersionError,
)
from tests.support import unique_hsa_id

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
CONCURRENT = 20


@pytest.fixture
def store(hapi: HapiClient) -> ContractStore:
    return ContractStore(hapi)


def _example(name: str) -> Contract:
    contract = Contract.model_validate_json((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return contract.model_copy(update={"id": f"store-{uuid.uuid4().hex}"})


def _draft() -> Contract:
    return _example("elderly-psychiatry")


def _agreements() -> tuple[Agreement, ...]:
    now = datetime.now(UTC).replace(microsecond=0)
    return tuple(Agreement(party=party, agreed_at=now) for party in AgreementParty)


def _hapi_requests(hapi: HapiClient, metrics: Metrics) -> float:
    return sum(
        metrics.registry.get_sample_value(
            "fhir_service_hapi_requests_total", {"method": m, "outcome": "200"}
        )
        or 0.0
        for m in ("GET", "POST")
    )


async def test_create_then_read_gives_the_contract_at_version_1(store: ContractStore) -> None:
    contract = _draft()

    created = await store.create(contract)
    read = await store.read(contract.id)

    assert created.version == 1
    assert read == created == contract.model_copy(update={"version": 1})


async def test_reading_one_contract_is_one_hapi_request(hapi_base_url: str) -> None:
    metrics = Metrics()
    client = HapiClient(hapi_base_url, metrics)
    store = ContractStore(client)
    contract = _example("stroke-rehabilitation")
    await store.create(contract)
    before = _hapi_requests(client, metrics)

    await store.read(contract.id)

    assert _hapi_requests(client, metrics) - before == 1
    await client.aclose()


async def test_creating_an_existing_contract_is_refused(store: ContractStore) -> None:
    contract = _draft()
    await store.create(contract)

    with pytest.raises(ContractExistsError) as caught:
        await store.create(contract.model_copy(update={"title": "another title"}))

    assert caught.value.version == 1
    assert (await store.read(contract.id)).title == contract.title


async def test_concurrent_creates_of_one_contract_make_one_careplan(
    store: ContractStore, hapi: HapiClient
) -> None:
    contract = _draft()

    results = await asyncio.gather(
        *(store.create(contract) for _ in range(CONCURRENT)), return_exceptions=True
    )

    created = [r for r in results if isinstance(r, Contract)]
    refused = [r for r in results if isinstance(r, ContractExistsError)]
    assert len(created) == 1, results
    assert len(refused) == CONCURRENT - 1
    found = await hapi.search("CarePlan", {"identifier": f"{urls.ID_CONTRACT}|{contract.id}"})
    assert len(found.matches()) == 1
    assert await store.read(contract.id) == created[0]


async def test_concurrent_creates_of_contracts_sharing_a_new_professional_all_succeed(
    store: ContractStore, hapi: HapiClient
) -> None:
    # A professional HAPI has not seen yet: every transaction creates it conditionally, and all
    # but one lose the race over it.
    base = _draft()
    newcomer = base.responsible_clinician.model_copy(
        update={
            "identifier": base.responsible_clinician.identifier.model_copy(
                update={"value": unique_hsa_id()}
            )
        }
    )
    contracts = [
        _draft().model_copy(update={"responsible_clinician": newcomer}) for _ in range(CONCURRENT)
    ]

    results = await asyncio.gather(*(store.create(c) for c in contracts), return_exceptions=True)

    assert [type(r).__name__ for r in results] == ["Contract"] * CONCURRENT
    roles = await hapi.search(
        "Practitioner", {"identifier": f"urn:oid:1.2.752.29.4.19|{newcomer.identifier.value}"}
    )
    assert len(roles.matches()) == 1


async def test_a_confidentiality_label_taken_off_is_gone_from_every_resource(
    store: ContractStore,
) -> None:
    # HAPI keeps a resource's old security labels when an update has none, unless told not to.
    plain = _draft()
    restricted = Confidentiality.RESTRICTED
    labelled = plain.model_copy(
        update={
            "confidentiality": restricted,
            "goals": tuple(
                g.model_copy(update={"confidentiality": restricted}) for g in plain.goals
            ),
            "agreed_times": tuple(
                t.model_copy(update={"confidentiality": restricted}) for t in plain.agreed_times
            ),
        }
    )
    created = await store.create(labelled)

    updated = await store.update(plain, created.version or 0)

    read = await store.read(plain.id)
    assert created.confidentiality is restricted
    assert read == updated
    assert read.confidentiality is Confidentiality.NORMAL
    assert {g.confidentiality for g in read.goals} == {Confidentiality.NORMAL}
    assert {t.confidentiality for t in read.agreed_times} == {Confidentiality.NORMAL}


async def test_a_stale_update_is_refused_and_changes_nothing(store: ContractStore) -> None:
    contract = await store.create(_draft())
    first = await store.update(contract.model_copy(update={"title": "first edit"}), 1)

    with pytest.raises(StaleVersionError) as caught:
        await store.update(contract.model_copy(update={"title": "lost edit"}), 1)

    assert (caught.value.expected, caught.value.current) == (1, 2)
    assert first.version == 2
    assert (await store.read(contract.id)).title == "first edit"


async def test_concurrent_updates_from_one_version_let_exactly_one_win(
    store: ContractStore,
) -> None:
    contract = await store.create(_draft())
    edits = [contract.model_copy(update={"title": f"edit {n}"}) for n in range(5)]

    results = await asyncio.gather(*(store.update(e, 1) for e in edits), return_exceptions=True)

    winners = [r for r in results if isinstance(r, Contract)]
    assert len(winners) == 1, results
    assert all(isinstance(r, StaleVersionError) for r in results if r not in winners)
    assert await store.read(contract.id) == winners[0]


async def test_an_update_deletes_what_the_contract_no_longer_has(
    store: ContractStore, hapi: HapiClient
) -> None:
    contract = await store.create(_draft())
    dropped = contract.goals[0]

    updated = await store.update(contract.model_copy(update={"goals": contract.goals[1:]}), 1)

    assert await store.read(contract.id) == updated
    assert dropped.key not in {g.key for g in updated.goals}
    goals = await hapi.search("Goal", {"identifier": f"{urls.ID_GOAL}|{contract.id}/{dropped.key}"})
    assert goals.matches() == []


async def test_lifecycle_through_the_store(store: ContractStore, hapi: HapiClient) -> None:
    draft = await store.create(_draft())
    agreements = _agreements()

    agreed = await store.agree(draft.id, 1, agreements)
    with pytest.raises(ContractNotEditableError, match="revise it before"):
        await store.update(agreed.model_copy(update={"title": "quiet change"}), 2)
    revised = await store.step(draft.id, ContractStatus.REVISED, 2)
    changed = await store.update(revised.model_copy(update={"title": "after revision"}), 3)
    agreed_again = await store.agree(draft.id, 4, _agreements())
    ended = await store.step(draft.id, ContractStatus.ENDED, 5)

    assert (agreed.status, agreed.version, agreed.agreements) == (
        ContractStatus.AGREED,
        2,
        agreements,
    )
    assert (revised.status, revised.agreements) == (ContractStatus.REVISED, ())
    assert changed.title == "after revision"
    assert agreed_again.status is ContractStatus.AGREED
    assert (ended.status, ended.agreements, ended.version) == (ContractStatus.ENDED, (), 6)
    assert await store.read(draft.id) == ended
    careplans = await hapi.search("CarePlan", {"identifier": f"{urls.ID_CONTRACT}|{draft.id}"})
    careplan_id = careplans.matches()[0]["id"]
    provenances = await hapi.search("Provenance", {"target": f"CarePlan/{careplan_id}"})
    targets = sorted(p["target"][0]["reference"] for p in provenances.matches())
    assert targets == [f"CarePlan/{careplan_id}/_history/{v}" for v in (2, 5)]


async def test_illegal_transition_changes_nothing(store: ContractStore) -> None:
    draft = await store.create(_draft())

    with pytest.raises(ValueError, match="a draft contract cannot become revised"):
        await store.step(draft.id, ContractStatus.REVISED, 1)

    assert await store.read(draft.id) == draft


async def test_unknown_contract_is_not_found(store: ContractStore) -> None:
    with pytest.raises(ContractNotFoundError):
        await store.read(f"missing-{uuid.uuid4().hex}")
