"""What the service shell costs: ``GET /ready`` through the service vs the same probe sent to HAPI.

``/ready`` sends HAPI ``GET /metadata?_elements=fhirVersion`` and runs ``SELECT 1`` on the
service DB, so the ratio is the price of our HTTP stack (middleware, request id, metrics,
logging, the pooled client) on top of the very request it forwards. Both are measured in the
same run, on the same HAPI.

    .venv/bin/python -m bench.readiness [--requests 400] [--concurrency 8]

Uses ``FHIR_BASE_URL`` when set, otherwise starts the local HAPI (in memory) for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.support import hapi_base_url
from tests.support import free_port

WARM_UP = 50
PROBE = "{}/metadata?_elements=fhirVersion"


@contextmanager
def _service(hapi_url: str, workdir: Path) -> Iterator[str]:
    port = free_port()
    env = os.environ | {
        "FHIR_SERVICE_HAPI_URL": hapi_url,
        "FHIR_SERVICE_DATA_DIR": str(workdir),
        "FHIR_SERVICE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_service", "serve", "--port", str(port)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _measure(url: str, requests: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue: asyncio.Queue[None] = asyncio.Queue()
    for _ in range(requests):
        queue.put_nowait(None)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for _ in range(WARM_UP):
            (await client.get(url)).raise_for_status()

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                (await client.get(url)).raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed


def _summary(name: str, latencies: list[float], elapsed: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    median = statistics.median(ordered) * 1000
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1000
    throughput = len(ordered) / elapsed
    print(f"{name:<28} median {median:7.2f} ms   p99 {p99:7.2f} ms   {throughput:8.1f} req/s")
    return median, p99, throughput


def main() -> None:
    """Run both measurements and print them with their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with (
        hapi_base_url() as hapi_url,
        tempfile.TemporaryDirectory() as workdir,
        _service(hapi_url, Path(workdir)) as service_url,
    ):
        direct = _summary(
            "HAPI GET /metadata probe",
            *asyncio.run(_measure(PROBE.format(hapi_url), args.requests, args.concurrency)),
        )
        ours = _summary(
            "service GET /ready",
            *asyncio.run(_measure(f"{service_url}/ready", args.requests, args.concurrency)),
        )
    print(
        f"ratios service/HAPI: median {ours[0] / direct[0]:.2f}x, p99 {ours[1] / direct[1]:.2f}x,"
        f" throughput {ours[2] / direct[2]:.2f}x"
    )


if __name__ == "__main__":
    main()
