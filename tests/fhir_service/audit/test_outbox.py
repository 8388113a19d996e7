"""The audit outbox on SQLite and PostgreSQL, into the real HAPI: each event once, outage or not."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from fhir_service import servicedb
from fhir_service.audit import outbox as outbox_module
from fhir_service.audit.events import audit_event
from fhir_service.audit.outbox import (
    Answered,
    AuditOutbox,
    AuditRecorder,
    AuditWriter,
    Completed,
    Opened,
    complete,
    keep,
    open_record,
    record,
)
from fhir_service.audit.records import AccessRecord, Caller, Interaction, Outcome, Touched
from fhir_service.fhir import HapiClient, RetryPolicy
from fhir_service.metrics import Metrics
from fhir_service.servicedb.instances import DEAD_AFTER, ThisInstance
from fhir_service.servicedb.tables import AuditRecord
from tests.tcp_proxy import running_proxy


def _access(system: str = "urn:example:patients", **changes: Any) -> AccessRecord:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "recorded": datetime.now(UTC),
        "interaction": Interaction.READ,
        "outcome": Outcome.SUCCESS,
        "description": "read contract",
        "caller": Caller(subject="user-1", issuer="https://idp.example", client_id="ehr-app"),
        "request_id": str(uuid.uuid4()),
        "method": "GET",
        "route": "/contracts/{contract_id}",
        "patients": ((system, "191212121212"),),
        "entities": (Touched("CarePlan", identifier=(system, "contract-1")),),
    } | changes
    return AccessRecord(**values)


def _recorded(engine: Engine, count: int, system: str = "urn:example:patients") -> list[str]:
    accesses = [_access(system) for _ in range(count)]
    for access in accesses:
        record(engine, access)
    return [a.id for a in accesses]


def _rows(engine: Engine) -> dict[str, AuditRecord]:
    with Session(engine) as session:
        return {row.id: row for row in session.scalars(select(AuditRecord))}


def _aware(moment: datetime) -> datetime:
    # SQLite gives back the naive UTC time it was given; PostgreSQL an aware one.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _found(hapi: HapiClient, ids: list[str]) -> list[dict[str, Any]]:
    return (await hapi.search("AuditEvent", {"_id": ",".join(ids), "_count": "500"})).matches()


async def _write_all(writer: AuditWriter, rounds: int = 100) -> None:
    for _ in range(rounds):
        if await asyncio.to_thread(writer.outbox.pending) == 0:
            return
        if not await writer.run_once():
            await asyncio.sleep(0.05)
    pytest.fail(f"{await asyncio.to_thread(writer.outbox.pending)} audit records still pending")


def test_a_recorded_access_is_its_audit_event_due_at_once(engine: Engine) -> None:
    access = _access()

    record(engine, access)

    row = _rows(engine)[access.id]
    assert json.loads(row.resource) == audit_event(access)
    assert (row.attempts, row.written_at, row.last_error) == (0, None, None)
    assert [c.id for c in AuditOutbox(engine).claim(10)] == [access.id]


def test_an_opened_record_waits_for_its_outcome_and_goes_out_with_it(engine: Engine) -> None:
    outbox = AuditOutbox(engine)
    running = ThisInstance(engine)
    running.beat()
    opened = _access(outcome=None, description="create contract: outcome unknown")

    open_record(engine, opened, running.id)
    while_running = outbox.claim(10)
    recovered_while_alive = outbox.recover(now=datetime.now(UTC) + timedelta(seconds=1))
    answered = replace(opened, outcome=Outcome.SUCCESS, description="create contract: 201")
    complete(engine, answered)
    claimed = outbox.claim(10)

    assert (while_running, recovered_while_alive) == ([], 0)
    assert [json.loads(c.resource) for c in claimed] == [audit_event(answered)]
    assert audit_event(answered)["outcome"] == "0"


async def test_the_opened_record_of_a_dead_instance_reaches_hapi_saying_the_outcome_is_unknown(
    engine: Engine, hapi: HapiClient
) -> None:
    killed = ThisInstance(engine)
    killed.beat(datetime.now(UTC) - DEAD_AFTER - timedelta(seconds=1))
    opened = _access(outcome=None, description="create contract: outcome unknown")
    open_record(engine, opened, killed.id)
    with Session(engine) as session, session.begin():
        row = session.get(AuditRecord, opened.id)
        assert row is not None
        row.created_at = datetime.now(UTC) - DEAD_AFTER - timedelta(seconds=1)
    writer = AuditWriter(AuditOutbox(engine), hapi)

    await _write_all(writer)

    [stored] = await _found(hapi, [opened.id])
    assert "outcome" not in stored
    assert stored["outcomeDesc"] == "create contract: outcome unknown"


def test_a_claimed_record_is_not_claimed_again_until_its_lease_runs_out(engine: Engine) -> None:
    outbox = AuditOutbox(engine, lease=timedelta(seconds=60))
    ids = _recorded(engine, 3)

    first = outbox.claim(10)
    again = outbox.claim(10)
    after_lease = outbox.claim(10, now=datetime.now(UTC) + timedelta(seconds=61))

    assert sorted(c.id for c in first) == sorted(ids)
    assert again == []
    assert sorted(c.id for c in after_lease) == sorted(ids)


def test_written_records_are_done_and_failed_ones_come_back_after_their_back_off(
    engine: Engine,
) -> None:
    outbox = AuditOutbox(engine, first_retry=timedelta(seconds=10))
    done, failing = _recorded(engine, 2)
    outbox.claim(10)

    outbox.written([done])
    outbox.failed([failing], "HapiUnavailableError: cannot connect")

    assert outbox.pending() == 1
    assert outbox.claim(10, now=datetime.now(UTC) + timedelta(seconds=4)) == []
    retried = outbox.claim(10, now=datetime.now(UTC) + timedelta(seconds=11))
    assert [(c.id, c.attempts) for c in retried] == [(failing, 1)]
    rows = _rows(engine)
    assert rows[failing].last_error == "HapiUnavailableError: cannot connect"
    assert rows[done].written_at is not None


def test_the_back_off_doubles_and_stops_growing_at_its_cap(engine: Engine) -> None:
    cap = timedelta(minutes=5)
    outbox = AuditOutbox(engine, first_retry=timedelta(seconds=2), max_retry=cap)
    (record_id,) = _recorded(engine, 1)
    waits = []
    for _ in range(25):
        now = datetime.now(UTC)
        outbox.failed([record_id], "HTTP 503", now=now)
        due = _rows(engine)[record_id].next_attempt_at
        waits.append(_aware(due) - now)

    assert timedelta(seconds=1) <= waits[0] <= timedelta(seconds=2)
    assert timedelta(seconds=2) <= waits[1] <= timedelta(seconds=4)
    assert all(cap / 2 <= wait <= cap for wait in waits[10:])
    assert _rows(engine)[record_id].attempts == 25


async def test_recorded_accesses_are_written_to_hapi_as_they_were_built(
    engine: Engine, hapi: HapiClient
) -> None:
    accesses = [_access(), _access(outcome=Outcome.MINOR_FAILURE, caller=Caller())]
    for access in accesses:
        await asyncio.to_thread(record, engine, access)
    writer = AuditWriter(AuditOutbox(engine), hapi)

    assert await writer.run_once() == 2

    assert await asyncio.to_thread(writer.outbox.pending) == 0
    stored = {e["id"]: e for e in await _found(hapi, [a.id for a in accesses])}
    for access in accesses:
        event = stored[access.id]
        assert event["meta"]["versionId"] == "1"
        assert {k: v for k, v in event.items() if k != "meta"} == {
            k: v for k, v in audit_event(access).items() if k != "meta"
        }


async def test_writing_a_record_again_after_a_lost_answer_stores_it_once(
    engine: Engine, hapi: HapiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _recorded(engine, 3)
    outbox = AuditOutbox(engine, lease=timedelta(0))
    writer = AuditWriter(outbox, hapi)
    with monkeypatch.context() as lost:
        # HAPI stored the batch but the service never learnt it: the rows stay due.
        lost.setattr(outbox, "written", lambda ids, now=None: None)
        await writer.run_once()
    assert await asyncio.to_thread(outbox.pending) == 3

    await _write_all(writer)

    found = await _found(hapi, ids)
    assert sorted(e["id"] for e in found) == sorted(ids)
    assert {e["meta"]["versionId"] for e in found} == {"1"}, "an identical PUT makes no version"
    for record_id in ids:
        history = await hapi.history("AuditEvent", record_id)
        assert len(history.resources) == 1


def _stored_as_is(engine: Engine, event: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.add(
            AuditRecord(
                id=event["id"],
                resource=json.dumps(event),
                created_at=now,
                next_attempt_at=now,
                attempts=0,
            )
        )


@pytest.mark.parametrize(
    ("spoil", "error"),
    [
        (
            lambda event: event["entity"][1].update(what={"reference": f"CarePlan/{uuid.uuid4()}"}),
            "400 Bad Request: HAPI-1094",  # the batch is taken, this entry refused
        ),
        (
            lambda event: event.update(action="X"),
            "InvalidRequestError: HAPI FHIR answered 400",  # the batch is refused: sent alone
        ),
    ],
    ids=["unresolvable-reference", "unparsable"],
)
async def test_an_event_hapi_refuses_does_not_hold_back_the_rest_of_its_batch(
    engine: Engine, hapi: HapiClient, spoil: Callable[[dict[str, Any]], None], error: str
) -> None:
    good = _recorded(engine, 2)
    event = audit_event(_access())
    spoil(event)
    _stored_as_is(engine, event)
    refused = event["id"]
    writer = AuditWriter(AuditOutbox(engine), hapi)

    assert await writer.run_once() == 3

    rows = _rows(engine)
    assert all(rows[i].written_at is not None for i in good)
    assert rows[refused].written_at is None
    assert rows[refused].attempts == 1
    assert (rows[refused].last_error or "").startswith(error)
    assert sorted(e["id"] for e in await _found(hapi, [*good, refused])) == sorted(good)


async def test_an_event_about_a_deleted_record_is_still_written(
    engine: Engine, hapi: HapiClient
) -> None:
    careplan = await hapi.create(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"identifier": {"system": "urn:example:patients", "value": "1"}},
        }
    )
    await hapi.delete("CarePlan", careplan["id"])
    access = _access(
        interaction=Interaction.DELETE,
        method="DELETE",
        entities=(Touched("CarePlan", reference=f"CarePlan/{careplan['id']}"),),
    )
    await asyncio.to_thread(record, engine, access)

    await AuditWriter(AuditOutbox(engine), hapi).run_once()

    assert [e["id"] for e in await _found(hapi, [access.id])] == [access.id]


async def test_records_made_while_hapi_is_down_stay_pending_and_are_written_once_when_it_is_back(
    engine: Engine, hapi: HapiClient, hapi_base_url: str, metrics: Metrics
) -> None:
    ids = _recorded(engine, 5)
    base = urlsplit(hapi_base_url)
    outbox = AuditOutbox(
        engine, first_retry=timedelta(milliseconds=50), max_retry=timedelta(milliseconds=200)
    )
    with running_proxy((base.hostname or "127.0.0.1", base.port or 80)) as proxy:
        through_proxy = HapiClient(
            f"http://127.0.0.1:{proxy.port}{base.path}",
            metrics,
            timeout=30,
            retry=RetryPolicy(attempts=1),
        )
        writer = AuditWriter(outbox, through_proxy)
        proxy.cut()
        for _ in range(3):
            assert await writer.run_once() == 5
            await asyncio.sleep(0.25)
        during = _rows(engine)
        proxy.restore()
        await _write_all(writer)
        await through_proxy.aclose()

    assert {during[i].attempts for i in ids} == {3}
    assert {during[i].written_at for i in ids} == {None}
    assert all("HapiUnavailableError" in (during[i].last_error or "") for i in ids)
    found = await _found(hapi, ids)
    assert sorted(e["id"] for e in found) == sorted(ids)
    assert {e["meta"]["versionId"] for e in found} == {"1"}
    assert {r.attempts for r in _rows(engine).values()} == {4}


async def _pending_soon(writer: AuditWriter, wanted: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(writer.outbox.pending) == wanted:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_woken_writer_waits_for_a_lull_in_requests(
    engine: Engine, hapi: HapiClient
) -> None:
    busy = True
    writer = AuditWriter(AuditOutbox(engine), hapi)
    wake = asyncio.Event()
    running = asyncio.create_task(
        writer.run_forever(
            wake,
            gather_seconds=0.05,
            quiet=lambda: 0.0 if busy else 10.0,
            most_delay_seconds=60.0,
        )
    )
    try:
        await asyncio.sleep(0.2)
        _recorded(engine, 2)
        wake.set()
        await asyncio.sleep(1.0)
        held_back = await asyncio.to_thread(writer.outbox.pending)
        busy = False

        assert held_back == 2
        assert await _pending_soon(writer, 0)
    finally:
        running.cancel()


async def test_a_busy_service_gets_its_records_written_after_the_longest_delay(
    engine: Engine, hapi: HapiClient
) -> None:
    writer = AuditWriter(AuditOutbox(engine), hapi)
    wake = asyncio.Event()
    running = asyncio.create_task(
        writer.run_forever(wake, gather_seconds=0.05, quiet=lambda: 0.0, most_delay_seconds=0.5)
    )
    try:
        await asyncio.sleep(0.2)
        _recorded(engine, 2)
        wake.set()

        assert await _pending_soon(writer, 0)
    finally:
        running.cancel()


async def test_records_kept_at_the_same_time_share_commits_and_each_waits_for_its_own(
    engine: Engine,
) -> None:
    recorder = AuditRecorder(engine)
    commits: list[int] = []
    listen = lambda _connection: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listen)
    accesses = [_access() for _ in range(40)]
    try:
        await asyncio.gather(*(recorder.keep(Answered(a)) for a in accesses))
    finally:
        event.remove(engine, "commit", listen)

    assert set(_rows(engine)) >= {a.id for a in accesses}
    # The first record's commit began as it was asked for; the other 39 were asked while it
    # ran (gather starts them in turn) and share the next.
    assert len(commits) == 2


async def test_a_record_that_cannot_be_kept_fails_alone_and_the_others_of_its_commit_are_kept(
    engine: Engine,
) -> None:
    recorder = AuditRecorder(engine)
    taken = _access()
    keep(engine, [Answered(taken)])
    others = [_access() for _ in range(5)]
    clash = replace(_access(), id=taken.id)

    results = await asyncio.gather(
        recorder.keep(Answered(others[0])),
        *(recorder.keep(Answered(a)) for a in [*others[1:3], clash, *others[3:]]),
        return_exceptions=True,
    )

    assert [type(r).__name__ for r in results] == [
        "NoneType", "NoneType", "NoneType", "IntegrityError", "NoneType", "NoneType"
    ]  # fmt: skip
    rows = _rows(engine)
    assert {a.id for a in others} <= set(rows)
    assert json.loads(rows[taken.id].resource) == audit_event(taken)


async def test_a_record_is_kept_and_completed_though_its_request_went_away(engine: Engine) -> None:
    recorder = AuditRecorder(engine)
    opened = _access(outcome=None, description="read contract: outcome unknown")
    running = asyncio.create_task(recorder.keep(Opened(opened, "instance-1")))
    await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    answered = replace(opened, outcome=Outcome.SUCCESS, description="read contract: 200")

    await recorder.keep(Completed(answered))

    row = _rows(engine)[opened.id]
    assert json.loads(row.resource) == audit_event(answered)
    assert row.owner is None


async def test_when_the_database_cannot_be_written_every_waiter_of_a_commit_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writable = servicedb.make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    servicedb.migrate(writable)
    writable.dispose()
    read_only = servicedb.make_engine(f"sqlite:///file:{tmp_path / 'service.db'}?mode=ro&uri=true")
    tries: list[int] = []
    real_keep = outbox_module.keep

    def counted(engine: Engine, keepings: Any) -> None:
        tries.append(len(keepings))
        real_keep(engine, keepings)

    monkeypatch.setattr(outbox_module, "keep", counted)
    recorder = AuditRecorder(read_only)

    results = await asyncio.gather(
        *(recorder.keep(Answered(_access())) for _ in range(5)), return_exceptions=True
    )

    assert [type(r).__name__ for r in results] == ["OperationalError"] * 5
    # The first's try began as it was asked for; the other four shared one, and none was
    # tried again alone, which would keep the last waiting for all the others' failures.
    assert tries == [1, 4]
    read_only.dispose()


def _outcome_of(opened: AccessRecord) -> AccessRecord:
    return replace(opened, outcome=Outcome.SUCCESS, description="read contract: 200")


async def test_an_outcome_goes_with_the_next_record_kept_in_one_commit(engine: Engine) -> None:
    due: list[int] = []
    recorder = AuditRecorder(engine, linger_seconds=60, due=lambda: due.append(1))
    first = _access(outcome=None, description="read contract: outcome unknown")
    await recorder.keep(Opened(first, "instance-1"))
    commits: list[int] = []
    listen = lambda _connection: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listen)
    try:
        recorder.keep_soon(Completed(_outcome_of(first)))
        # Not kept on its own: it waits for the next record (here for a minute at most).
        await asyncio.sleep(0.2)
        assert commits == []
        assert json.loads(_rows(engine)[first.id].resource)["outcomeDesc"].endswith("unknown")
        second = _access(outcome=None, description="read contract: outcome unknown")
        await recorder.keep(Opened(second, "instance-1"))
    finally:
        event.remove(engine, "commit", listen)

    assert commits == [1]
    rows = _rows(engine)
    assert json.loads(rows[first.id].resource) == audit_event(_outcome_of(first))
    assert rows[first.id].owner is None
    assert rows[second.id].owner == "instance-1"
    # The outcome made a record due: the writer is told.
    assert due == [1]


async def test_an_outcome_alone_is_kept_within_the_linger(engine: Engine) -> None:
    due: list[int] = []
    recorder = AuditRecorder(engine, linger_seconds=0.05, due=lambda: due.append(1))
    opened = _access(outcome=None, description="read contract: outcome unknown")
    await recorder.keep(Opened(opened, "instance-1"))

    recorder.keep_soon(Completed(_outcome_of(opened)))

    deadline = time.monotonic() + 10
    # The row shows as its commit ends, in the worker thread; the writer is told a moment later,
    # on the loop: wait for both.
    while _rows(engine)[opened.id].owner is not None or not due:
        assert time.monotonic() < deadline, "the outcome was never kept, or nobody was told"
        await asyncio.sleep(0.02)
    assert json.loads(_rows(engine)[opened.id].resource) == audit_event(_outcome_of(opened))
    assert due == [1]


async def test_outcomes_waiting_are_kept_when_the_recorder_is_flushed(engine: Engine) -> None:
    recorder = AuditRecorder(engine, linger_seconds=3600)
    opened = [_access(outcome=None, description="read contract: outcome unknown") for _ in range(3)]
    for access in opened:
        await recorder.keep(Opened(access, "instance-1"))
        recorder.keep_soon(Completed(_outcome_of(access)))

    await recorder.flush()

    rows = _rows(engine)
    assert [json.loads(rows[a.id].resource) for a in opened] == [
        audit_event(_outcome_of(a)) for a in opened
    ]


async def test_an_outcome_that_cannot_be_kept_is_logged_and_its_record_stays_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "service.db"
    writable = servicedb.make_engine(f"sqlite:///{path}")
    servicedb.migrate(writable)
    opened = _access(outcome=None, description="read contract: outcome unknown")
    open_record(writable, opened, "instance-1")
    writable.dispose()
    read_only = servicedb.make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    recorder = AuditRecorder(read_only, linger_seconds=3600)

    recorder.keep_soon(Completed(_outcome_of(opened)))
    await recorder.flush()

    assert "audit outcome could not be kept" in caplog.text
    row = _rows(read_only)[opened.id]
    assert json.loads(row.resource)["outcomeDesc"] == "read contract: outcome unknown"
    assert row.owner == "instance-1"
    read_only.dispose()


async def test_a_round_of_events_reaches_hapi_in_one_transaction(
    engine: Engine, hapi: HapiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _recorded(engine, 20)
    sent: list[str] = []
    transaction = hapi.transaction

    async def noted(bundle: dict[str, Any], **options: Any) -> dict[str, Any]:
        sent.append(bundle["type"])
        return await transaction(bundle, **options)

    monkeypatch.setattr(hapi, "transaction", noted)
    writer = AuditWriter(AuditOutbox(engine), hapi)

    assert await writer.run_once() == 20

    assert sent == ["transaction"]
    found = await _found(hapi, ids)
    assert sorted(e["id"] for e in found) == sorted(ids)
    # HAPI stamps a transaction's records with the moment it began: one commit for all.
    assert len({e["meta"]["lastUpdated"] for e in found}) == 1


async def test_a_backlog_goes_to_hapi_in_bundles_side_by_side(
    engine: Engine, hapi: HapiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _recorded(engine, 25)
    sizes: list[int] = []
    running = [0, 0]  # now, most at once
    transaction = hapi.transaction

    async def noted(bundle: dict[str, Any], **options: Any) -> dict[str, Any]:
        sizes.append(len(bundle["entry"]))
        running[0] += 1
        running[1] = max(running)
        try:
            return await transaction(bundle, **options)
        finally:
            running[0] -= 1

    monkeypatch.setattr(hapi, "transaction", noted)
    writer = AuditWriter(AuditOutbox(engine), hapi, batch=10, lanes=3)

    assert await writer.run_once() == 25

    assert sorted(sizes) == [5, 10, 10]
    assert running[1] == 3
    assert sorted(e["id"] for e in await _found(hapi, ids)) == sorted(ids)
    assert await asyncio.to_thread(writer.outbox.pending) == 0
