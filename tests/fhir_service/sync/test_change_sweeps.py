"""The change feed's reads against the real HAPI: a wake reads from its cursor on, so each change
is read once or twice, not once per wake for the whole overlap; a sweep still finds the change a
wake could not (committed after the cursor had passed its stamp)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fhir_service import servicedb
from fhir_service.contract import Contract, IdentifierKind
from fhir_service.fhir import HapiClient, SearchResult
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.metrics import Metrics
from fhir_service.servicedb.tables import Delivery, SyncState
from fhir_service.store import ContractStore
from fhir_service.sync.changes import WATCHED_TYPES, ChangeFeed, changes_in
from fhir_service.sync.webhook_registrations import Reach, TargetPolicy, WebhookRegistry
from tests.fhir_service.sync.support import watched_records
from tests.support import unique_hsa_id, unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
SECRET = "a-test-secret-that-is-long-enough"
# No DNS here: every receiver's name resolves to a public address (example.com's, once).
POLICY = TargetPolicy(resolver=lambda host, port: [ip_address("93.184.215.14")])


class _CountingHapi(HapiClient):
    """HAPI's client, counting how often HAPI hands back each resource version in full (in
    ``_history`` or read by version), and how often ``_history`` only lists it."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, Metrics(), timeout=60)
        self.reads: Counter[tuple[str, str, str]] = Counter()
        self.listed: Counter[tuple[str, str, str]] = Counter()

    async def history(self, *args: Any, **kwargs: Any) -> SearchResult:
        result = await super().history(*args, **kwargs)
        for change in changes_in(result.entries):
            subsetted = any(
                tag.get("code") == "SUBSETTED"
                for tag in (change.resource or {}).get("meta", {}).get("tag", [])
            )
            (self.listed if subsetted else self.reads)[change.key] += 1
        return result

    async def vread(self, resource_type: str, resource_id: str, version: str | int) -> Any:
        self.reads[(resource_type, resource_id, str(version))] += 1
        return await super().vread(resource_type, resource_id, version)


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = servicedb.make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    servicedb.migrate(engine)
    yield engine
    engine.dispose()


def _contract(unit: str) -> Contract:
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"sweep-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    data["responsible_clinician"]["organization"]["identifier"]["value"] = unit
    return Contract.model_validate(data)


def _unit_hook(engine: Engine, unit: str) -> str:
    token = f"{system_for(IdentifierKind.HSA_ID)}|{unit}"
    registry = WebhookRegistry(engine, POLICY)
    hook = registry.register(
        "https://ehr.example/unit", SECRET, owner="ehr", reach=Reach(), care_unit=token
    )
    return hook.id


async def _started(
    hapi: HapiClient, engine: Engine, overlap: timedelta, enqueued: asyncio.Event | None = None
) -> tuple[ChangeFeed, str, str]:
    """A feed past its first start and the sweep after it, and a webhook of a new unit: the
    feed, the webhook's id and the unit."""
    unit = unique_hsa_id()
    hook = _unit_hook(engine, unit)
    registry = WebhookRegistry(engine, POLICY)
    feed = ChangeFeed(
        hapi, engine, ContractStore(hapi), registry, overlap=overlap, enqueued=enqueued
    )
    await feed.catch_up()  # the first start: the cursors begin at HAPI's "now"
    await feed.catch_up()  # the sweep after it: its cursor is the next sweep's mark
    return feed, hook, unit


def _announced(engine: Engine, webhook_id: str) -> Counter[tuple[str, str, str]]:
    with Session(engine) as session:
        payloads = session.scalars(
            select(Delivery.payload).where(Delivery.webhook_id == webhook_id)
        ).all()
    resources = [json.loads(p)["resource"] for p in payloads]
    return Counter((r["resourceType"], r["id"], r["versionId"]) for r in resources)


async def test_over_several_wakes_with_writes_each_change_is_read_at_most_twice(
    conformance_loaded: str, sqlite: Engine
) -> None:
    engine = sqlite
    hapi = _CountingHapi(conformance_loaded)
    store = ContractStore(hapi)
    enqueued = asyncio.Event()
    # An overlap longer than the test takes: after the sweep at the start, every read is a wake.
    feed, hook, unit = await _started(hapi, engine, timedelta(seconds=60), enqueued)
    hapi.reads.clear()
    enqueued.clear()
    records: set[tuple[str, str, str]] = set()

    for _ in range(4):
        contract = await store.create(_contract(unit))
        records |= await watched_records(hapi, contract.id)
        retitled = contract.model_copy(update={"title": "Ändrad"})
        changed = await store.update(retitled, contract.version or 0)
        records |= await watched_records(hapi, changed.id)
        await feed.catch_up()
    await hapi.aclose()

    assert records <= set(hapi.reads), "every change was read"
    assert max(hapi.reads.values()) <= 2, hapi.reads.most_common(3)
    assert _announced(engine, hook) == dict.fromkeys(records, 1)
    assert enqueued.is_set(), "the delivery worker was told"


async def test_sweeps_list_the_changes_again_but_read_each_in_full_once_or_twice(
    conformance_loaded: str, sqlite: Engine
) -> None:
    engine = sqlite
    hapi = _CountingHapi(conformance_loaded)
    store = ContractStore(hapi)
    # A short overlap: every read of the rounds below is a sweep.
    overlap = timedelta(seconds=0.3)
    feed, hook, unit = await _started(hapi, engine, overlap)
    hapi.reads.clear()
    records: set[tuple[str, str, str]] = set()

    for _ in range(3):
        await asyncio.sleep(overlap.total_seconds())
        contract = await store.create(_contract(unit))
        # A sweep right after the write: the next one's window, an overlap before where this
        # one read, holds the write again.
        await feed.catch_up()
        records |= await watched_records(hapi, contract.id)
    await asyncio.sleep(overlap.total_seconds())
    await feed.catch_up()
    await hapi.aclose()

    assert max(hapi.listed[r] for r in records) >= 2, "the sweeps' windows overlap"
    # Once, and a second time when it was the newest a read saw: a read from the cursor reads
    # the cursor's own millisecond again.
    assert max(hapi.reads[r] for r in records) <= 2, hapi.reads.most_common(3)
    assert _announced(engine, hook) == dict.fromkeys(records, 1)


async def test_a_change_committed_after_the_cursor_passed_its_stamp_goes_out_with_the_next_sweep(
    hapi: HapiClient, sqlite: Engine
) -> None:
    engine = sqlite
    store = ContractStore(hapi)
    overlap = timedelta(seconds=1)
    feed, hook, unit = await _started(hapi, engine, overlap)
    late = await store.create(_contract(unit))
    await asyncio.sleep(overlap.total_seconds() * 1.5)
    # As if another change, stamped later, had committed first and a read had moved every
    # cursor past this contract's stamp (more than an overlap past it) before it committed.
    now = await _hapi_now(hapi)
    _move_cursors(engine, now)

    await feed.catch_up()  # more than an overlap after the last sweep: a sweep
    await feed.catch_up()

    assert _announced(engine, hook) == dict.fromkeys(await watched_records(hapi, late.id), 1)


async def test_a_late_change_of_a_burst_goes_out_with_the_read_after_the_burst_ended(
    hapi: HapiClient, sqlite: Engine
) -> None:
    engine = sqlite
    store = ContractStore(hapi)
    # Longer than the test takes: no sweep comes because it is its turn.
    feed, hook, unit = await _started(hapi, engine, timedelta(seconds=60))
    assert not feed.settling
    burst = await store.create(_contract(unit))
    await feed.catch_up()  # a read that finds the burst's changes
    assert feed.settling, "the feed is to read again soon"
    late = await store.create(_contract(unit))
    await asyncio.sleep(0.01)
    # As if the cursors had passed this contract's stamp before it committed.
    _move_cursors(engine, await _hapi_now(hapi))

    await feed.catch_up()  # finds nothing new: the burst has ended
    missed = _announced(engine, hook)
    await feed.catch_up()  # so this read sweeps
    assert not feed.settling

    late_records = await watched_records(hapi, late.id)
    assert not late_records & set(missed), "the read from the cursor could not see it"
    expected = late_records | await watched_records(hapi, burst.id)
    assert _announced(engine, hook) == dict.fromkeys(expected, 1)


async def _hapi_now(hapi: HapiClient) -> datetime:
    page = await hapi.history("CarePlan", params=[("_count", "1")])
    return datetime.fromisoformat(page.meta["lastUpdated"]).astimezone(UTC)


def _move_cursors(engine: Engine, moment: datetime) -> None:
    with Session(engine) as session, session.begin():
        for resource_type in WATCHED_TYPES:
            row = session.get(SyncState, f"history_cursor:{resource_type}")
            assert row is not None
            row.value = moment.isoformat()


async def test_while_nothing_changes_the_sweeps_windows_move_on(
    conformance_loaded: str, sqlite: Engine
) -> None:
    engine = sqlite
    hapi = _CountingHapi(conformance_loaded)
    store = ContractStore(hapi)
    overlap = timedelta(seconds=0.5)
    feed, hook, unit = await _started(hapi, engine, overlap)
    contract = await store.create(_contract(unit))
    records = await watched_records(hapi, contract.id)
    await asyncio.sleep(overlap.total_seconds() * 2)
    await feed.catch_up()  # a sweep: its window holds the contract's changes
    listed = Counter({r: hapi.listed[r] for r in records})
    assert set(listed.values()) == {1}, listed

    for _ in range(3):
        await asyncio.sleep(overlap.total_seconds())
        await feed.catch_up()  # sweeps, each an overlap before where the last one read
    await hapi.aclose()

    # A window an overlap before the newest change would list them at every sweep.
    assert {r: hapi.listed[r] for r in records} == listed
    assert _announced(engine, hook) == dict.fromkeys(records, 1)


class _UnstampedHapi(_CountingHapi):
    """A HAPI whose history Bundles say nothing of its clock."""

    async def history(self, *args: Any, **kwargs: Any) -> SearchResult:
        result = await super().history(*args, **kwargs)
        result.meta = {}
        return result


async def test_without_hapis_clock_a_sweep_keeps_its_cursor_as_the_mark(
    conformance_loaded: str, sqlite: Engine
) -> None:
    engine = sqlite
    hapi = _UnstampedHapi(conformance_loaded)
    overlap = timedelta(seconds=0.5)
    # The first start needs HAPI's clock; the sweeps after it are read without.
    stamped = _CountingHapi(conformance_loaded)
    feed, hook, unit = await _started(stamped, engine, overlap)
    feed.hapi = hapi
    contract = await ContractStore(hapi).create(_contract(unit))
    records = await watched_records(hapi, contract.id)

    for _ in range(3):
        await asyncio.sleep(overlap.total_seconds() * 2)
        await feed.catch_up()
    await hapi.aclose()
    await stamped.aclose()

    # Not this machine's clock, which may run ahead of HAPI's: the newest change it saw, so
    # every sweep's window reaches back over the write.
    assert {r: hapi.listed[r] for r in records} == dict.fromkeys(records, 3)
    assert _announced(engine, hook) == dict.fromkeys(records, 1)
