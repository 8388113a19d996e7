"""The change feed against the real HAPI: every change becomes events once, for who wants it."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from fhir_service import servicedb
from fhir_service.contract import (
    ActivityStatus,
    Agreement,
    AgreementParty,
    Contract,
    ContractStatus,
    IdentifierKind,
    ProgressReport,
    Reporter,
)
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.mapping.provenance import Author
from fhir_service.metrics import Metrics
from fhir_service.security.access import Compartment
from fhir_service.servicedb.tables import Delivery
from fhir_service.store import Change, ContractStore
from fhir_service.sync.changes import WATCHED_TYPES, ChangeFeed, changes_in
from fhir_service.sync.webhook_registrations import Reach, TargetPolicy, WebhookRegistry
from tests.fhir_service.sync.support import watched_records
from tests.support import load_data, unique_hsa_id, unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
SECRET = "a-test-secret-that-is-long-enough"
# A registrant whose token reached every contract, so that only the filters decide.
EHR: dict[str, Any] = {"owner": "ehr", "reach": Reach()}
# There is no DNS here: every receiver's name resolves to a public address (example.com's, once).
POLICY = TargetPolicy(resolver=lambda host, port: [ip_address("93.184.215.14")])


@pytest.fixture
def sqlite(tmp_path: Path) -> Engine:
    engine = servicedb.make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    servicedb.migrate(engine)
    return engine


def _contract(personnummer: str, care_unit: str) -> Contract:
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"feed-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = personnummer
    data["responsible_clinician"]["organization"]["identifier"]["value"] = care_unit
    return Contract.model_validate(data)


def _agreements() -> tuple[Agreement, ...]:
    now = datetime.now(UTC).replace(microsecond=0)
    return tuple(Agreement(party=party, agreed_at=now) for party in AgreementParty)


def _events(engine: Engine, webhook_id: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        payloads = session.scalars(
            select(Delivery.payload).where(Delivery.webhook_id == webhook_id)
        ).all()
    return [json.loads(p) for p in payloads]


def _of(events: list[dict[str, Any]], contract_id: str) -> list[dict[str, Any]]:
    return [e for e in events if (e["contract"] or {}).get("id") == contract_id]


def test_history_entries_become_changes_oldest_first_with_deletions() -> None:
    bundle = load_data("webhooks/careplan-history.json")

    changes = changes_in(bundle["entry"])

    assert [(c.resource_id, c.version, c.kind) for c in changes] == [
        ("1001", "1", "created"),
        ("1001", "2", "updated"),
        ("1001", "3", "deleted"),
    ]


async def test_a_new_contract_reaches_the_webhooks_of_its_patient_and_care_unit_once(
    hapi: HapiClient, sqlite: Engine
) -> None:
    registry = WebhookRegistry(sqlite, POLICY)
    store = ContractStore(hapi)
    feed = ChangeFeed(hapi, sqlite, store, registry)
    await feed.catch_up()
    patient, unit = unique_personnummer(), unique_hsa_id()
    patient_token = f"{system_for(IdentifierKind.PERSONNUMMER)}|{patient}"
    unit_token = f"{system_for(IdentifierKind.HSA_ID)}|{unit}"
    other_unit = f"{system_for(IdentifierKind.HSA_ID)}|{unique_hsa_id()}"
    hooks = {
        "patient": registry.register(
            "https://ehr.example/a", SECRET, **EHR, patient_identifier=patient_token
        ),
        "unit": registry.register("https://ehr.example/b", SECRET, **EHR, care_unit=unit_token),
        "other patient": registry.register(
            "https://ehr.example/c",
            SECRET,
            **EHR,
            patient_identifier=f"{system_for(IdentifierKind.PERSONNUMMER)}|{unique_personnummer()}",
        ),
        "all": registry.register("https://ehr.example/d", SECRET, **EHR),
        "the patient's own": registry.register(
            "https://ehr.example/e", SECRET, owner="patient", reach=Reach(patient=patient_token)
        ),
        "the unit's own": registry.register(
            "https://ehr.example/f", SECRET, owner="unit", reach=Reach(responsible_unit=unit_token)
        ),
        "another unit's": registry.register(
            "https://ehr.example/g",
            SECRET,
            owner="another unit",
            reach=Reach(responsible_unit=other_unit),
            care_unit=unit_token,
        ),
    }
    contract = await store.create(_contract(patient, unit))

    made = await feed.catch_up()
    again = await feed.catch_up()

    expected = {"CarePlan.created", "CareTeam.created", "Appointment.created"}
    for name in ("patient", "unit", "all", "the patient's own", "the unit's own"):
        events = _of(_events(sqlite, hooks[name].id), contract.id)
        assert expected <= {e["type"] for e in events}, name
        careplan = next(e for e in events if e["type"] == "CarePlan.created")
        assert careplan["resource"]["versionId"] == str(contract.version)
    assert _events(sqlite, hooks["other patient"].id) == []
    assert _events(sqlite, hooks["another unit's"].id) == []
    assert made >= 3
    assert again == 0


async def test_changes_made_straight_in_hapi_become_events_with_their_versions(
    hapi: HapiClient, sqlite: Engine, conformance_loaded: str
) -> None:
    registry = WebhookRegistry(sqlite, POLICY)
    store = ContractStore(hapi)
    feed = ChangeFeed(hapi, sqlite, store, registry)
    await feed.catch_up()
    patient = unique_personnummer()
    hook = registry.register(
        "https://ehr.example/a",
        SECRET,
        **EHR,
        patient_identifier=f"{system_for(IdentifierKind.PERSONNUMMER)}|{patient}",
    )
    contract = await store.create(_contract(patient, unique_hsa_id()))
    await feed.catch_up()
    careplan = (
        await hapi.search("CarePlan", [("identifier", f"{urls.ID_CONTRACT}|{contract.id}")])
    ).matches()[0]
    gone = (
        await hapi.search("Appointment", [("patient", careplan["subject"]["reference"])])
    ).matches()[0]

    async with httpx.AsyncClient(base_url=conformance_loaded, timeout=60) as other_system:
        # HAPI keeps references whole: the plan lets go of its activities before one goes.
        changed = {k: v for k, v in careplan.items() if k != "activity"}
        changed["description"] = "changed by another system"
        updated = await other_system.put(f"/CarePlan/{careplan['id']}", json=changed)
        assert updated.status_code == 200, updated.text
        deleted = await other_system.delete(f"/Appointment/{gone['id']}")
        assert deleted.status_code == 200, deleted.text
    await feed.catch_up()

    events = _of(_events(sqlite, hook.id), contract.id)
    updates = [e for e in events if e["type"] == "CarePlan.updated"]
    deletions = [e for e in events if e["type"] == "Appointment.deleted"]
    assert [e["resource"]["versionId"] for e in updates] == [updated.json()["meta"]["versionId"]]
    assert [e["resource"]["id"] for e in deletions] == [gone["id"]]
    assert deletions[0]["resource"]["reference"].startswith(f"Appointment/{gone['id']}/_history/")


class _RacingStore(ContractStore):
    """A store whose first contract lookup, made while the feed routes a round's CarePlans,
    creates two more contracts, further apart than the feed's overlap: what 20 busy clients do
    while a slow round looks up its contracts."""

    def __init__(self, hapi: HapiClient, unit: str, pause: float) -> None:
        super().__init__(hapi)
        self.unit = unit
        self.pause = pause
        self.created: list[Contract] = []

    async def stored_records(self, contract_id: str) -> dict[str, Any]:
        if not self.created:
            self.created.append(await self.create(_contract(unique_personnummer(), self.unit)))
            await asyncio.sleep(self.pause)
            self.created.append(await self.create(_contract(unique_personnummer(), self.unit)))
        return await super().stored_records(contract_id)


async def test_changes_committed_while_a_round_looks_up_its_contracts_are_all_announced_once(
    hapi: HapiClient, sqlite: Engine
) -> None:
    overlap = timedelta(seconds=1)
    unit = unique_hsa_id()
    registry = WebhookRegistry(sqlite, POLICY)
    hook = registry.register(
        "https://ehr.example/a",
        SECRET,
        **EHR,
        care_unit=f"{system_for(IdentifierKind.HSA_ID)}|{unit}",
    )
    store = _RacingStore(hapi, unit, pause=overlap.total_seconds() * 3)
    feed = ChangeFeed(hapi, sqlite, store, registry, overlap=overlap)
    await feed.catch_up()
    # Written by another instance, so that the feed looks it up (its own writes it need not).
    first = await ContractStore(hapi).create(_contract(unique_personnummer(), unit))

    await feed.catch_up()
    await feed.catch_up()

    events = _events(sqlite, hook.id)
    for contract in (first, *store.created):
        announced = Counter(_version_of(e) for e in _of(events, contract.id))
        assert announced == dict.fromkeys(await watched_records(hapi, contract.id), 1)


def _version_of(event: dict[str, Any]) -> tuple[str, str, str]:
    resource = event["resource"]
    return resource["resourceType"], resource["id"], resource["versionId"]


async def test_a_change_in_hapi_that_leaves_a_contract_unreadable_is_announced_to_its_unit(
    hapi: HapiClient, sqlite: Engine, conformance_loaded: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = WebhookRegistry(sqlite, POLICY)
    store = ContractStore(hapi)
    feed = ChangeFeed(hapi, sqlite, store, registry)
    await feed.catch_up()
    patient, unit = unique_personnummer(), unique_hsa_id()
    unit_token = f"{system_for(IdentifierKind.HSA_ID)}|{unit}"
    patient_token = f"{system_for(IdentifierKind.PERSONNUMMER)}|{patient}"
    hooks = {
        "the unit's own": registry.register(
            "https://ehr.example/u", SECRET, owner="unit", reach=Reach(responsible_unit=unit_token)
        ),
        "the patient's own": registry.register(
            "https://ehr.example/p", SECRET, owner="patient", reach=Reach(patient=patient_token)
        ),
    }
    created = await store.create(_contract(patient, unit))
    agreed = await store.agree(created.id, 1, _agreements())
    await feed.catch_up()
    careplan = (
        await hapi.search("CarePlan", [("identifier", f"{urls.ID_CONTRACT}|{created.id}")])
    ).matches()[0]

    # Another system retitles the agreed plan without revising it: no agreement targets the new
    # version, so the contract no longer reads.
    async with httpx.AsyncClient(base_url=conformance_loaded, timeout=60) as other_system:
        changed = {**careplan, "title": "retitled by another system"}
        updated = await other_system.put(f"/CarePlan/{careplan['id']}", json=changed)
        assert updated.status_code == 200, updated.text
    with caplog.at_level(logging.WARNING, logger="fhir_service.sync.changes"):
        await feed.catch_up()

    version = updated.json()["meta"]["versionId"]
    assert int(version) == agreed.version + 1
    for name, hook in hooks.items():
        updates = [
            e["contract"]
            for e in _of(_events(sqlite, hook.id), created.id)
            if e["type"] == "CarePlan.updated" and e["resource"]["versionId"] == version
        ]
        assert updates == [{"id": created.id, "readable": False}], name
    # Said where an operator looks: the contract needs mending.
    assert created.id in {getattr(r, "contract_id", None) for r in caplog.records}


async def test_two_instances_reading_the_same_changes_make_each_event_once(
    hapi: HapiClient, engine: Engine
) -> None:
    registry = WebhookRegistry(engine, POLICY)
    hook = registry.register("https://ehr.example/all", SECRET, **EHR)
    second = servicedb.make_engine(engine.url.render_as_string(hide_password=False))
    feeds = [
        ChangeFeed(hapi, engine, ContractStore(hapi), registry),
        ChangeFeed(hapi, second, ContractStore(hapi), WebhookRegistry(second, POLICY)),
    ]
    await feeds[0].catch_up()
    contract = await ContractStore(hapi).create(_contract(unique_personnummer(), unique_hsa_id()))

    made = await asyncio.gather(*(f.catch_up() for f in feeds))
    second.dispose()

    events = _of(_events(engine, hook.id), contract.id)
    keys = [
        (e["resource"]["resourceType"], e["resource"]["id"], e["resource"]["versionId"])
        for e in events
    ]
    assert len(keys) == len(set(keys))
    assert {"CarePlan", "CareTeam", "Appointment"} <= {k[0] for k in keys}
    assert sum(made) >= len(keys)


async def test_with_no_webhook_registered_changes_are_only_marked_seen_without_reads(
    hapi: HapiClient, sqlite: Engine, metrics: Metrics
) -> None:
    registry = WebhookRegistry(sqlite, POLICY)
    # Pages big enough that each type's recent history is one read, whatever ran just before.
    feed = ChangeFeed(hapi, sqlite, ContractStore(hapi), registry, page_size=1000)
    await feed.catch_up()
    await ContractStore(hapi).create(_contract(unique_personnummer(), unique_hsa_id()))
    before = _gets(metrics)

    made = await feed.catch_up()

    assert made >= 3
    assert _gets(metrics) - before == 3, "one history read per watched type, nothing else"


async def test_changes_seen_before_are_skipped_after_one_look_per_type(
    hapi: HapiClient, sqlite: Engine
) -> None:
    registry = WebhookRegistry(sqlite, POLICY)
    feed = ChangeFeed(hapi, sqlite, ContractStore(hapi), registry, page_size=1000)
    await feed.catch_up()
    for _ in range(3):
        await ContractStore(hapi).create(_contract(unique_personnummer(), unique_hsa_id()))
    made = await feed.catch_up()
    statements: list[str] = []
    event.listen(sqlite, "before_cursor_execute", lambda *args: statements.append(args[2]))

    again = await feed.catch_up()

    # The window overlaps the one before: its changes are looked up by type, not one by one
    # (the webhooks, then per watched type its cursor and one query).
    assert made >= 9
    assert again == 0
    assert len(statements) <= 1 + 2 * len(WATCHED_TYPES), statements


def _gets(metrics: Metrics) -> float:
    labels = {"method": "GET", "outcome": "200"}
    return metrics.registry.get_sample_value("fhir_service_hapi_requests_total", labels) or 0.0


@dataclass
class _UnitHook:
    """A new contract of a unit of its own, whose webhook hears of its changes."""

    store: ContractStore
    feed: ChangeFeed
    hook_id: str
    contract: Contract

    def updates(self, sqlite: Engine) -> list[str]:
        """The CarePlan versions the unit's webhook heard of, as updates."""
        events = _of(_events(sqlite, self.hook_id), self.contract.id)
        return [e["resource"]["versionId"] for e in events if e["type"] == "CarePlan.updated"]


async def _unit_hook(hapi: HapiClient, sqlite: Engine) -> _UnitHook:
    registry = WebhookRegistry(sqlite, POLICY)
    store = ContractStore(hapi)
    patient, unit = unique_personnummer(), unique_hsa_id()
    unit_token = f"{system_for(IdentifierKind.HSA_ID)}|{unit}"
    hook = registry.register(
        "https://ehr.example/unit", SECRET, owner="unit", reach=Reach(responsible_unit=unit_token)
    )
    contract = await store.create(_contract(patient, unit))
    return _UnitHook(store, ChangeFeed(hapi, sqlite, store, registry), hook.id, contract)


async def test_a_patients_decline_reaches_the_units_webhook_and_says_why(
    hapi: HapiClient, sqlite: Engine
) -> None:
    unit = await _unit_hook(hapi, sqlite)
    contract, store = unit.contract, unit.store
    proposed = await store.propose(contract.id, contract.version or 0)
    await unit.feed.catch_up()
    why = "Tre promenader i veckan orkar jag, inte sju."

    declined = await store.decline(contract.id, proposed.version or 0, why)
    await unit.feed.catch_up()

    assert str(declined.version) in unit.updates(sqlite)
    read = await store.read(contract.id)
    assert read.patient_review is not None
    assert read.patient_review.comment == why
    assert read.patient_review.declined_at is not None


async def test_a_patients_progress_report_reaches_the_units_webhook(
    hapi: HapiClient, sqlite: Engine
) -> None:
    unit = await _unit_hook(hapi, sqlite)
    contract, store = unit.contract, unit.store
    agreed = await store.agree(contract.id, contract.version or 0, _agreements())
    await unit.feed.catch_up()
    by = Change(Author(("https://issuer.example", "patient-1")), Compartment())
    report = ProgressReport(reported_at=datetime.now(UTC), by=Reporter.PATIENT, note="Klart!")

    reported = await store.report_progress(
        contract.id, "walk", ActivityStatus.COMPLETED, report, by
    )
    await unit.feed.catch_up()

    assert str(reported.version) in unit.updates(sqlite)
    assert reported.version == (agreed.version or 0) + 1
    read = await store.read(contract.id)
    assert read.status is ContractStatus.AGREED
    walk = next(a for a in read.activities if a.key == "walk")
    assert walk.status is ActivityStatus.COMPLETED
    assert walk.progress == report


class _CountingStore(ContractStore):
    """A store that notes each contract the feed reads back to route its changes."""

    def __init__(self, hapi: HapiClient) -> None:
        super().__init__(hapi)
        self.read_back: list[str] = []

    async def stored_records(self, contract_id: str) -> dict[str, Any]:
        self.read_back.append(contract_id)
        return await super().stored_records(contract_id)


async def _counting_feed(
    hapi: HapiClient, sqlite: Engine
) -> tuple[WebhookRegistry, _CountingStore, ChangeFeed]:
    """A started feed (its cursors at HAPI's now) routing through a counting store."""
    registry = WebhookRegistry(sqlite, POLICY)
    store = _CountingStore(hapi)
    feed = ChangeFeed(hapi, sqlite, store, registry)
    await feed.catch_up()
    return registry, store, feed


def _unit_token(unit: str) -> str:
    return f"{system_for(IdentifierKind.HSA_ID)}|{unit}"


async def test_own_writes_are_routed_as_each_write_left_the_contract_without_reading_it_back(
    hapi: HapiClient, sqlite: Engine
) -> None:
    registry, store, feed = await _counting_feed(hapi, sqlite)
    patient, before, after = unique_personnummer(), unique_hsa_id(), unique_hsa_id()
    hooks = {
        unit: registry.register(
            f"https://ehr.example/{unit}", SECRET, **EHR, care_unit=_unit_token(unit)
        )
        for unit in (before, after)
    }
    everything = registry.register("https://ehr.example/all", SECRET, **EHR)
    created = await store.create(_contract(patient, before))
    moved = _contract(patient, after).model_copy(update={"id": created.id})
    updated = await store.update(moved, created.version or 0)

    await feed.catch_up()

    assert created.id not in store.read_back

    def careplans(hook_id: str) -> list[tuple[str, str]]:
        return [
            (e["type"], e["resource"]["versionId"])
            for e in _of(_events(sqlite, hook_id), created.id)
            if e["resource"]["resourceType"] == "CarePlan"
        ]

    # Each version went to the unit responsible when it was written, not when it was read.
    assert careplans(hooks[before].id) == [("CarePlan.created", str(created.version))]
    assert careplans(hooks[after].id) == [("CarePlan.updated", str(updated.version))]
    announced = Counter(_version_of(e) for e in _of(_events(sqlite, everything.id), created.id))
    assert set(announced.values()) == {1}
    assert await watched_records(hapi, created.id) <= set(announced)


async def test_changes_written_by_another_instance_are_routed_by_reading_the_contract(
    hapi: HapiClient, sqlite: Engine
) -> None:
    registry, store, feed = await _counting_feed(hapi, sqlite)
    unit = unique_hsa_id()
    hook = registry.register("https://ehr.example/u", SECRET, **EHR, care_unit=_unit_token(unit))
    created = await ContractStore(hapi).create(_contract(unique_personnummer(), unit))

    await feed.catch_up()

    assert store.read_back.count(created.id) == 1, "read once for all its records' changes"
    announced = Counter(_version_of(e) for e in _of(_events(sqlite, hook.id), created.id))
    assert announced == dict.fromkeys(await watched_records(hapi, created.id), 1)


async def test_how_far_the_feed_lags_behind_hapi_is_measured_for_each_event_made(
    hapi: HapiClient, sqlite: Engine, metrics: Metrics
) -> None:
    feed = ChangeFeed(
        hapi, sqlite, ContractStore(hapi), WebhookRegistry(sqlite, POLICY), metrics=metrics
    )
    await feed.catch_up()
    await ContractStore(hapi).create(_contract(unique_personnummer(), unique_hsa_id()))
    await asyncio.sleep(1.0)

    made = await feed.catch_up()

    def sample(suffix: str) -> float:
        name = f"fhir_service_change_feed_lag_seconds_{suffix}"
        return metrics.registry.get_sample_value(name) or 0.0

    # Deletions, which HAPI lists without a stamp, are the only events not measured.
    assert 3 <= sample("count") <= made
    # The contract's records waited at least the second slept; none waited a minute.
    assert sample("sum") >= 3 * 1.0
    assert sample("sum") / sample("count") < 60
