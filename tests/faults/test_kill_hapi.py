"""``kill -9`` of HAPI while clients write and read: every answer honest, nothing lost or twice,
every access on record.

HAPI runs on PostgreSQL, as in production, and is killed outright while 10 clients create
contracts under ``Idempotency-Key``s and read them back; it is started again on the same
database while they go on. Then every client retries what did not succeed, with its key. Every
answer is one a client can act on (never a 500): ``503`` only where nothing was written (a retry
never finds a write the 503 denied), ``504`` where the outcome was unknown; every contract ends
up in HAPI exactly once with one Provenance of its creation; every answered request has exactly
one AuditEvent, written once HAPI was back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url

from fhir_service.cli.local_hapi import LocalHapi
from tests.auth import TestIssuer
from tests.faults.support import (
    UNIT,
    audit_events,
    careplans,
    contract,
    created_provenances,
    service_settings,
    wait_for,
)
from tests.postgres import fresh_database
from tests.service_process import ServiceProcess
from tests.support import HAPI_START_TIMEOUT, free_port

CLIENTS = 10
KILL_AFTER_CREATES = 20
RETRY_AFTER_SECONDS = 2.0
# Statuses a client can act on while HAPI is away; anything else (a 500 above all) is a failure.
HONEST = {200, 201, 404, 409, 503, 504}


@dataclass
class _Answer:
    request_id: str
    method: str
    contract_id: str
    status: int | None
    replayed: bool = False


@pytest.fixture
def hapi_on_postgres(tmp_path: Path) -> Iterator[LocalHapi]:
    """A HAPI of this test's own, on a fresh PostgreSQL database, killed and started at will."""
    with fresh_database() as database:
        url = make_url(database)
        server = LocalHapi(
            port=free_port(),
            jdbc_url=f"jdbc:postgresql://{url.host}:{url.port}/{url.database}",
            jdbc_username=url.username,
            jdbc_password=url.password,
        )
        log = tmp_path / "hapi.log"
        with log.open("ab") as out:
            server.start(log=out)
        try:
            server.wait_until_ready(HAPI_START_TIMEOUT, log)
            yield server
        finally:
            server.stop()


def test_clients_writing_and_reading_through_a_hapi_kill_get_honest_answers_and_lose_nothing(
    hapi_on_postgres: LocalHapi, tmp_path: Path, issuer: TestIssuer
) -> None:
    hapi = hapi_on_postgres
    headers = issuer.headers("ehr", organization=UNIT)
    answers: list[_Answer] = []
    lock = threading.Lock()
    contracts: dict[str, tuple[dict[str, Any], str]] = {}  # id: (contract, its key)
    stop = threading.Event()

    def ask(
        base_url: str, method: str, contract_id: str, body: Any = None, key: str | None = None
    ) -> httpx.Response | None:
        request_id = uuid.uuid4().hex
        extra = {"X-Request-ID": request_id, **({"Idempotency-Key": key} if key else {})}
        path = "/contracts" if method == "POST" else f"/contracts/{contract_id}"
        try:
            response = httpx.request(
                method, f"{base_url}{path}", json=body, headers={**headers, **extra}, timeout=60
            )
        except httpx.TransportError:
            with lock:
                answers.append(_Answer(request_id, method, contract_id, None))
            return None
        replayed = response.headers.get("Idempotency-Replayed") == "true"
        with lock:
            answers.append(_Answer(request_id, method, contract_id, response.status_code, replayed))
        return response

    def client(base_url: str) -> None:
        while not stop.is_set():
            body, key = contract("hapi-killed"), str(uuid.uuid4())
            with lock:
                contracts[body["id"]] = (body, key)
            created = ask(base_url, "POST", body["id"], body, key)
            read = ask(base_url, "GET", body["id"])
            if any(r is None or r.status_code >= 500 for r in (created, read)):
                time.sleep(RETRY_AFTER_SECONDS)  # as Retry-After asks

    with fresh_database() as service_db:
        settings = service_settings(hapi.base_url, service_db, issuer)
        settings["HAPI_TIMEOUT_SECONDS"] = "5"
        service = ServiceProcess(settings, tmp_path / "service.log")
        service.start()
        try:
            with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
                running = [pool.submit(client, service.base_url) for _ in range(CLIENTS)]
                # Killed mid-stream, once the clients have written a while.
                wait_for(
                    "the clients' first creates",
                    lambda: sum(a.status == 201 for a in answers) >= KILL_AFTER_CREATES,
                )
                hapi.kill()
                killed_at = len(answers)
                with (tmp_path / "hapi.log").open("ab") as out:
                    hapi.start(log=out)
                hapi.wait_until_ready(HAPI_START_TIMEOUT, tmp_path / "hapi.log")
                wait_for(
                    "the service is ready again",
                    lambda: httpx.get(f"{service.base_url}/ready", timeout=10).status_code == 200,
                    seconds=120,
                )
                stop.set()
                [r.result() for r in running]

            def settle(contract_id: str) -> int | None:
                body, key = contracts[contract_id]
                deadline = time.monotonic() + 90
                while True:
                    response = ask(service.base_url, "POST", contract_id, body, key)
                    status = None if response is None else response.status_code
                    if status == 201 or time.monotonic() > deadline:
                        return status
                    time.sleep(1)

            with ThreadPoolExecutor(max_workers=5) as pool:
                settled = dict(zip(contracts, pool.map(settle, list(contracts)), strict=True))
            ids = list(contracts)
            held = careplans(hapi.base_url, ids)
            created = created_provenances(hapi.base_url, ids)
            answered = [a.request_id for a in answers if a.status is not None]

            def all_audited() -> bool:
                events = audit_events(hapi.base_url, answered)
                return all(len(e) == 1 for e in events.values())

            wait_for("every answered request is in HAPI's audit trail", all_audited, 120)
        finally:
            service.stop()

    statuses = [a.status for a in answers if a.status is not None]
    print(  # for the record of a run (pytest -s)
        f"HAPI killed after {killed_at} of {len(answers)} requests; "
        f"{statuses.count(503)} answered 503, {statuses.count(504)} answered 504, "
        f"{len(contracts)} contracts"
    )
    assert statuses.count(503) + statuses.count(504) > 0, "HAPI's death went unnoticed"
    assert set(statuses) <= HONEST, sorted(set(statuses) - HONEST)
    assert settled == dict.fromkeys(contracts, 201)
    assert held == dict.fromkeys(contracts, 1)
    assert created == dict.fromkeys(contracts, 1)
    # A 503 says nothing was written, and gives its key up. Were every earlier try of a key
    # answered 503, a retry finding the write made (replayed) would prove one of them wrong.
    for contract_id in contracts:
        tries = [a for a in answers if a.method == "POST" and a.contract_id == contract_id]
        first_write = next(i for i, a in enumerate(tries) if a.status != 503)
        assert not (first_write > 0 and tries[first_write].replayed), tries
