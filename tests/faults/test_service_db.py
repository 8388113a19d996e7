"""A service DB that cannot be written: nothing is done that cannot be accounted for.

The service process runs on a SQLite file made immutable (``chattr +i``, as an operator or a
full, read-only remounted disk leaves it), or on a PostgreSQL database that stops taking
connections. While it lasts: ``/ready`` says so; a write, keyed or not, is refused with a 503
saying nothing was written, and HAPI indeed holds nothing of it; a refusal of the security layer
(401, 403) is not told either, since it cannot be recorded. Once the database is back, the same
requests go through, and every request that did anything has exactly one AuditEvent.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from functools import partial
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from tests.auth import TestIssuer
from tests.faults.support import (
    UNIT,
    audit_events,
    careplans,
    contract,
    service_settings,
    wait_for,
)
from tests.postgres import fresh_database
from tests.service_process import ServiceProcess

Unwritable = Callable[[], AbstractContextManager[None]]
"""Makes the service's database unwritable for the length of a ``with`` block."""


@contextmanager
def _immutable(database: Path) -> Iterator[None]:
    # The file and its write-ahead log, where SQLite appends every commit. (Not the shared-memory
    # index: it is mapped into memory, and the kernel kills a process writing to an immutable
    # mapping outright, which is another fault, tested by the kill tests.)
    files = [p for p in (database, Path(f"{database}-wal")) if p.exists()]
    subprocess.run(["chattr", "+i", *map(str, files)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)


@contextmanager
def _refusing_connections(url: str) -> Iterator[None]:
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    name = parsed.database
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')  # type: ignore[arg-type]
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    try:
        yield
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def broken_service(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    conformance_loaded: str,
    issuer: TestIssuer,
) -> Iterator[tuple[ServiceProcess, Unwritable]]:
    """A service process, and how to make its database unwritable for a while."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            database = tmp_path / "service.db"
            url = f"sqlite:///{database}"
            unwritable: Unwritable = partial(_immutable, database)
        else:
            url = stack.enter_context(fresh_database())
            unwritable = partial(_refusing_connections, url)
        service = ServiceProcess(
            service_settings(conformance_loaded, url, issuer), tmp_path / "service.log"
        )
        service.start()
        stack.callback(service.stop)
        yield service, unwritable


def test_nothing_is_done_that_cannot_be_recorded_while_the_service_db_is_unwritable(
    broken_service: tuple[ServiceProcess, Unwritable],
    conformance_loaded: str,
    issuer: TestIssuer,
) -> None:
    service, unwritable = broken_service
    ehr = issuer.headers("ehr", organization=UNIT)
    booking = issuer.headers("booking")
    unkeyed, keyed = contract(), contract()
    sent: dict[str, str] = {}

    def ask(method: str, path: str, headers: dict[str, str], body: object = None) -> httpx.Response:
        request_id = uuid.uuid4().hex
        response = httpx.request(
            method,
            f"{service.base_url}{path}",
            json=body,
            headers={**headers, "X-Request-ID": request_id},
            timeout=60,
        )
        sent[request_id] = f"{method} {path} {response.status_code}"
        return response

    with unwritable():
        ready = httpx.get(f"{service.base_url}/ready", timeout=30)
        during = {
            "create": ask("POST", "/contracts", ehr, unkeyed),
            "keyed create": ask("POST", "/contracts", {**ehr, "Idempotency-Key": "k1"}, keyed),
            "no token": ask("GET", f"/contracts/{keyed['id']}", {}),
            "no right": ask("GET", f"/contracts/{keyed['id']}", booking),
        }
        held = careplans(conformance_loaded, [unkeyed["id"], keyed["id"]])

    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["database"]["status"] == "down"
    for name, answer in during.items():
        assert answer.status_code == 503, f"{name}: {answer.status_code} {answer.text}"
    for name in ("create", "keyed create"):
        assert "nothing was written" in during[name].json()["detail"], name
    assert held == {unkeyed["id"]: 0, keyed["id"]: 0}

    wait_for(
        "the service is ready again",
        lambda: httpx.get(f"{service.base_url}/ready", timeout=10).status_code == 200,
    )
    after = {
        "create": ask("POST", "/contracts", ehr, unkeyed),
        "keyed create": ask("POST", "/contracts", {**ehr, "Idempotency-Key": "k1"}, keyed),
        "no token": ask("GET", f"/contracts/{keyed['id']}", {}),
    }
    assert [a.status_code for a in after.values()] == [201, 201, 401]
    assert careplans(conformance_loaded, [unkeyed["id"], keyed["id"]]) == {
        unkeyed["id"]: 1,
        keyed["id"]: 1,
    }
    answered = [rid for rid, what in sent.items() if not what.endswith(" 503")]
    refused = [rid for rid, what in sent.items() if what.endswith(" 503")]

    def all_audited() -> bool:
        events = audit_events(conformance_loaded, answered)
        return all(len(events[rid]) == 1 for rid in answered)

    wait_for("every answered request reached HAPI's audit trail", all_audited)
    assert all(events == [] for events in audit_events(conformance_loaded, refused).values())
