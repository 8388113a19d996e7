"""Idempotency keys on SQLite and on PostgreSQL: replay, misuse, concurrency, expiry."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from fhir_service import servicedb
from fhir_service.servicedb.idempotency import (
    LONGEST_REQUEST,
    IdempotencyKeyReusedError,
    IdempotencyStore,
    Reclaimed,
    RequestInProgressError,
    StoredResponse,
)
from fhir_service.servicedb.instances import DEAD_AFTER, ThisInstance
from fhir_service.servicedb.tables import IdempotencyRecord

SCOPE = "POST /contracts"


@pytest.fixture
def keys(engine: Engine) -> IdempotencyStore:
    return IdempotencyStore(engine)


def test_migrations_make_the_table_and_running_them_again_changes_nothing(engine: Engine) -> None:
    servicedb.migrate(engine)

    inspector = inspect(engine)
    assert "idempotency_keys" in inspector.get_table_names()
    columns = {c["name"] for c in inspector.get_columns("idempotency_keys")}
    assert {"scope", "key", "request_hash", "state", "response_body", "expires_at"} <= columns


def test_the_first_request_goes_ahead_and_a_replay_gets_its_answer(keys: IdempotencyStore) -> None:
    assert keys.begin(SCOPE, "k1", b'{"id": "c1"}') is None
    keys.complete(SCOPE, "k1", 201, '{"id": "c1", "version": 1}')

    replay = keys.begin(SCOPE, "k1", b'{"id": "c1"}')

    assert replay == StoredResponse(201, '{"id": "c1", "version": 1}')


def test_the_same_key_with_another_request_is_refused(keys: IdempotencyStore) -> None:
    keys.begin(SCOPE, "k2", b'{"id": "c1"}')
    keys.complete(SCOPE, "k2", 201, "{}")

    with pytest.raises(IdempotencyKeyReusedError, match="different request"):
        keys.begin(SCOPE, "k2", b'{"id": "c2"}')


def test_keys_are_scoped(keys: IdempotencyStore) -> None:
    keys.begin(SCOPE, "k3", b"a")

    assert keys.begin("POST /other", "k3", b"b") is None


def test_a_replay_while_the_first_request_runs_is_told_to_wait(keys: IdempotencyStore) -> None:
    keys.begin(SCOPE, "k4", b"body")

    with pytest.raises(RequestInProgressError):
        keys.begin(SCOPE, "k4", b"body")


def test_concurrent_first_requests_let_exactly_one_go_ahead(keys: IdempotencyStore) -> None:
    def attempt(_: int) -> str:
        try:
            return "ahead" if keys.begin(SCOPE, "k5", b"body") is None else "replay"
        except RequestInProgressError:
            return "wait"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(16)))

    assert outcomes.count("ahead") == 1
    assert set(outcomes) <= {"ahead", "wait"}


def test_an_abandoned_key_can_be_used_again(keys: IdempotencyStore) -> None:
    keys.begin(SCOPE, "k6", b"body")
    keys.abandon(SCOPE, "k6")

    assert keys.begin(SCOPE, "k6", b"other body") is None


def test_expired_keys_are_forgotten(engine: Engine) -> None:
    short = IdempotencyStore(engine, ttl=timedelta(seconds=-1))
    short.begin(SCOPE, "k7", b"old")
    short.complete(SCOPE, "k7", 201, "old answer")

    assert short.begin(SCOPE, "k7", b"new") is None
    later = datetime.now(UTC) + timedelta(days=2)
    assert IdempotencyStore(engine).purge_expired(later) >= 1


def _age(engine: Engine, key: str, by: timedelta) -> None:
    """Make ``key``'s claim older: as if its request had been running for ``by``."""
    with Session(engine) as session, session.begin():
        record = session.get(IdempotencyRecord, (SCOPE, key))
        assert record is not None
        record.created_at = datetime.now(UTC) - by


def test_a_key_whose_instance_died_is_taken_over_by_one_retry(engine: Engine) -> None:
    keys = IdempotencyStore(engine)
    killed, restarted = ThisInstance(engine), ThisInstance(engine)
    killed.beat(datetime.now(UTC) - DEAD_AFTER - timedelta(seconds=1))
    restarted.beat()
    assert keys.begin(SCOPE, "k-dead", b"body", killed.id) is None
    _age(engine, "k-dead", DEAD_AFTER)

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(lambda _: _begin(keys, "k-dead", restarted.id), range(5)))

    assert sorted(outcomes) == ["in progress"] * 4 + ["reclaimed"]


def test_a_key_of_a_live_instance_or_a_fresh_claim_is_not_taken_over(engine: Engine) -> None:
    keys = IdempotencyStore(engine)
    alive, silent = ThisInstance(engine), ThisInstance(engine)
    alive.beat()
    keys.begin(SCOPE, "k-alive", b"body", alive.id)
    _age(engine, "k-alive", LONGEST_REQUEST - timedelta(minutes=1))
    # An instance that has not beaten yet, with a claim made a moment ago.
    keys.begin(SCOPE, "k-fresh", b"body", silent.id)

    assert _begin(keys, "k-alive", "another") == "in progress"
    assert _begin(keys, "k-fresh", "another") == "in progress"


def test_a_key_running_longer_than_any_request_is_taken_over_though_its_instance_lives(
    engine: Engine,
) -> None:
    # Its instance could not settle it (the database failed just then) and goes on beating.
    keys = IdempotencyStore(engine)
    alive = ThisInstance(engine)
    alive.beat()
    keys.begin(SCOPE, "k-lost", b"body", alive.id)
    _age(engine, "k-lost", LONGEST_REQUEST + timedelta(seconds=1))

    assert _begin(keys, "k-lost", "another") == "reclaimed"


def test_a_key_whose_outcome_is_unknown_is_taken_over_by_the_next_retry(
    keys: IdempotencyStore,
) -> None:
    keys.begin(SCOPE, "k-unknown", b"body", "instance")
    keys.unknown(SCOPE, "k-unknown")

    first, second = _begin(keys, "k-unknown", "a"), _begin(keys, "k-unknown", "b")
    keys.complete(SCOPE, "k-unknown", 201, "{}")

    assert (first, second) == ("reclaimed", "in progress")
    assert keys.begin(SCOPE, "k-unknown", b"body") == StoredResponse(201, "{}")


def _begin(keys: IdempotencyStore, key: str, owner: str) -> str:
    try:
        claimed = keys.begin(SCOPE, key, b"body", owner)
    except RequestInProgressError:
        return "in progress"
    return "reclaimed" if isinstance(claimed, Reclaimed) else repr(claimed)
