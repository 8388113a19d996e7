"""What the benchmarks share: a HAPI to measure against, and timing."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Literal

from sqlalchemy import make_url

from fhir_service.cli.local_hapi import LocalHapi
from tests.postgres import fresh_database
from tests.support import free_port

__all__ = ["HAPI_DATABASES", "HapiDatabase", "hapi_base_url", "median_seconds"]

HapiDatabase = Literal["h2", "postgres"]
HAPI_DATABASES: tuple[HapiDatabase, ...] = ("h2", "postgres")


@contextmanager
def hapi_base_url(database: HapiDatabase = "h2") -> Iterator[str]:
    """``FHIR_BASE_URL`` when set, otherwise a local HAPI started for the run.

    ``database``: ``h2`` runs it in memory, as the tests do; ``postgres`` on a fresh database of
    the local PostgreSQL (installed and started when missing), as ``docker-compose.yml`` runs
    HAPI in production. HAPI's own latency differs between the two, and with it every ratio.
    """
    configured = os.environ.get("FHIR_BASE_URL")
    if configured:
        yield configured.rstrip("/")
        return
    with ExitStack() as stack:
        server = LocalHapi(port=free_port())
        if database == "postgres":
            url = make_url(stack.enter_context(fresh_database()))
            server.jdbc_url = f"jdbc:postgresql://{url.host}:{url.port}/{url.database}"
            server.jdbc_username, server.jdbc_password = url.username, url.password
        server.start()
        stack.callback(server.stop)
        server.wait_until_ready(300)
        yield server.base_url


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``repeat`` calls of ``action``, after one warm-up call."""
    action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
