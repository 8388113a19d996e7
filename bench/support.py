"""What the benchmarks share: a HAPI to measure against, and timing."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fhir_service.local_hapi import LocalHapi
from tests.support import free_port

__all__ = ["hapi_base_url", "median_seconds"]


@contextmanager
def hapi_base_url() -> Iterator[str]:
    """``FHIR_BASE_URL`` when set, otherwise a local in-memory HAPI started for the run."""
    configured = os.environ.get("FHIR_BASE_URL")
    if configured:
        yield configured.rstrip("/")
        return
    server = LocalHapi(port=free_port())
    server.start()
    try:
        server.wait_until_ready(300)
        yield server.base_url
    finally:
        server.stop()


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``repeat`` calls of ``action``, after one warm-up call."""
    action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
