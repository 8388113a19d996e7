"""``kill -9`` of the service during 50 concurrent keyed creates: nothing lost, nothing twice,
no key locked, every access on record.

The service runs on PostgreSQL, as in production. 50 clients each create a contract of their own
under an ``Idempotency-Key``; the moment the first of them is answered, while the others are
still under way, the process is killed outright. It is started again and every client retries
with its key and body until it gets an answer that is not "in progress". Then: every retry is
answered within the time an instance takes to be missed (the dead one's keys are taken over,
never locked for their 24 hours); every contract is in HAPI exactly once, with one Provenance of
its creation; each request answered has exactly one AuditEvent, and so has each killed request
whose contract HAPI holds (saying its outcome is unknown unless it was complete): no write
without its record.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from fhir_service.servicedb.instances import DEAD_AFTER
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

CLIENTS = 50


def test_keyed_creates_cut_short_by_kill_9_are_each_made_once_after_a_restart(
    tmp_path: Path, conformance_loaded: str, issuer: TestIssuer
) -> None:
    headers = issuer.headers("ehr", organization=UNIT)
    contracts = [contract("killed") for _ in range(CLIENTS)]
    keys = [str(uuid.uuid4()) for _ in contracts]
    answered: dict[str, int] = {}
    unanswered: dict[str, str] = {}
    first_answer = threading.Event()

    def create(base_url: str, index: int) -> int | None:
        request_id = uuid.uuid4().hex
        try:
            response = httpx.post(
                f"{base_url}/contracts",
                json=contracts[index],
                headers={**headers, "Idempotency-Key": keys[index], "X-Request-ID": request_id},
                timeout=60,
            )
        except httpx.TransportError:
            unanswered[request_id] = contracts[index]["id"]
            return None
        answered[request_id] = response.status_code
        first_answer.set()
        return response.status_code

    with fresh_database() as database:
        service = ServiceProcess(
            service_settings(conformance_loaded, database, issuer), tmp_path / "service.log"
        )
        service.start()
        try:
            with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
                first = [pool.submit(create, service.base_url, i) for i in range(CLIENTS)]
                # Killed mid-burst, on a signal of the client's own: polling HAPI for what it
                # holds was slower than a whole burst on a fast run, and the kill came too late.
                first_answer.wait(timeout=60)
                service.kill()
                [f.result() for f in first]
            written_before_restart = careplans(conformance_loaded, [c["id"] for c in contracts])
            service.start()
            restarted = time.monotonic()

            def retry(index: int) -> int:
                while True:
                    status = create(service.base_url, index)
                    if status not in (None, 409) or time.monotonic() - restarted > 120:
                        return status or 0
                    time.sleep(1)

            with ThreadPoolExecutor(max_workers=10) as pool:
                retried = list(pool.map(retry, range(CLIENTS)))
            settled_within = time.monotonic() - restarted
            ids = [c["id"] for c in contracts]
            held, created = (
                careplans(conformance_loaded, ids),
                created_provenances(conformance_loaded, ids),
            )
            written = {cid for cid, n in written_before_restart.items() if n}
            must_be_audited = set(answered) | {
                rid for rid, cid in unanswered.items() if cid in written
            }

            def all_audited() -> bool:
                events = audit_events(conformance_loaded, must_be_audited)
                return all(len(e) == 1 for e in events.values())

            wait_for("every answered or writing request is in HAPI's audit trail", all_audited)
            events = audit_events(conformance_loaded, [*answered, *unanswered])
        finally:
            service.stop()

    print(  # for the record of a run (pytest -s): how hard the kill hit
        f"kill -9: {len(unanswered)} of {CLIENTS} creates cut short, {len(written)} of them "
        f"written; retries settled {settled_within:.1f} s after the restart"
    )
    assert unanswered, "the kill came after every create was answered: nothing was tested"
    assert retried == [201] * CLIENTS, retried
    assert settled_within < DEAD_AFTER.total_seconds() + 60
    assert held == dict.fromkeys(ids, 1)
    assert created == dict.fromkeys(ids, 1)
    assert all(len(events[rid]) <= 1 for rid in unanswered)
    # A killed request's record holds its outcome when it was completed before the kill (the
    # answer was on its way), and otherwise says the outcome is unknown.
    cut_short: list[dict[str, Any]] = [e[0] for rid, e in events.items() if rid in unanswered and e]
    assert all(
        "outcome" in event or "outcome unknown" in event["outcomeDesc"] for event in cut_short
    )
    assert [e for e in events.values() if len(e) > 1] == []
