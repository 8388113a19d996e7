"""Where a contract read spends its time in the service: a profile of ``GET /contracts/{id}``.

    .venv/bin/python -m bench.profile_read [--reads 300] [--top 25] [--first-reads]

The service runs in this process (the app of ``create_app``, on a temporary service DB, taking
the local development issuer's tokens) against a real HAPI. A few example contracts are stored
through it; then they are read ``--reads`` times, one at a time, again and again, as a patient
or an EHR reads a contract (the service keeps the contracts it read by HAPI's answer, so a read
of an unchanged one is not mapped again: ``fhir_service.store.mapped``). With ``--first-reads``,
as many more contracts are stored, and each is read once. Reads run with ``cProfile`` on in the
thread the app runs in, so the profile holds the service's own work and its waits for HAPI and
the service DB, and nothing of the client. It prints the wall time of a read, the share of it
spent waiting on HAPI and on the service DB, the functions with the most time of their own,
and the time of our own packages by package. Uses ``FHIR_BASE_URL`` when set, otherwise starts
the local HAPI for the run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from fastapi.testclient import TestClient

from bench.bulk import generated
from bench.support import (
    TIME_TYPES_SEED,
    contract_json,
    hapi_base_url,
    service_headers,
    tokens,
    unit_of,
)
from fhir_service.api import create_app
from fhir_service.booking import seed_definitions
from fhir_service.settings import Settings

CONTRACTS = 8
"""How many contracts are read in turn, and warm up the first reads: the four examples, twice
each."""
CALLER = "bench-profile-read"
"""The subject and client id of the tokens."""


def _package(filename: str) -> str:
    """What a profiled function belongs to: one of our packages, or a library."""
    if "/fhir_service/" in filename:
        below = filename.split("/fhir_service/", 1)[1]
        return "fhir_service/" + below.split("/", 1)[0].removesuffix(".py")
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    return "python"


def _report(
    profile: cProfile.Profile, reads: int, wall: list[float], hapi_seconds: float, top: int
) -> None:
    stats = pstats.Stats(profile)
    raw = stats.stats  # type: ignore[attr-defined]
    own: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), (_calls, _prim, tottime, _cum, _callers) in raw.items():
        own[_package(filename)] += tottime
    median = statistics.median(wall) * 1000
    print(f"{reads} reads: median {median:.1f} ms, p95 {_p95(wall) * 1000:.1f} ms (wall)")
    hapi = hapi_seconds / reads * 1000
    print(f"  of which HAPI answering (the client's metrics): {hapi:.1f} ms a read on average")
    print(
        "\nown time by package, ms a read ('python' holds the event loop's waits: for HAPI, "
        "and for the service DB, which runs in worker threads):"
    )
    for package, seconds in sorted(own.items(), key=lambda item: -item[1])[:15]:
        print(f"  {seconds / reads * 1000:7.2f}  {package}")
    print(f"\nthe {top} functions with the most time of their own:")
    stats.sort_stats("tottime").print_stats(top)


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def run(hapi_url: str, reads: int, top: int, first_reads: bool) -> None:
    """Store the contracts, read them ``reads`` times under the profiler, and report."""
    run_id = f"profile-{random.randrange(16**8):08x}"
    contracts = generated(CONTRACTS + reads if first_reads else CONTRACTS, run_id)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        minted = tokens(workdir, contracts, CALLER)
        settings = Settings(
            hapi_url=hapi_url,
            data_dir=workdir,
            database_url=f"sqlite:///{workdir / 'service.db'}",
            auth_local_issuer=True,
            time_types_seed=TIME_TYPES_SEED,
        )
        seed_definitions(TIME_TYPES_SEED)  # a broken seed says so before HAPI is asked
        with TestClient(create_app(settings)) as client:
            deadline = time.monotonic() + 120
            while client.get("/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the service is not ready: {client.get('/ready').text}")
                time.sleep(0.2)
            for contract in contracts:
                headers = service_headers(minted[unit_of(contract)], "application/json")
                made = client.post("/contracts", content=contract_json(contract), headers=headers)
                if made.status_code != 201:
                    raise SystemExit(f"storing a contract answered {made.status_code}: {made.text}")
            asked = [(f"/contracts/{c.id}", service_headers(minted[unit_of(c)])) for c in contracts]
            for path, headers in asked[:CONTRACTS]:  # warm-up: pools, caches, imports
                client.get(path, headers=headers)
            if first_reads:
                asked = asked[CONTRACTS:]
            profile = cProfile.Profile()
            portal = client.portal
            assert portal is not None  # set while the client is open
            wall = []
            hapi_before = _hapi_seconds(client.get("/metrics").text)
            portal.call(_enable, profile)
            for n in range(reads):
                path, headers = asked[n % len(asked)]
                started = time.perf_counter()
                answer = client.get(path, headers=headers)
                wall.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise SystemExit(f"a read answered {answer.status_code}: {answer.text}")
            portal.call(_disable, profile)
            hapi_seconds = _hapi_seconds(client.get("/metrics").text) - hapi_before
    _report(profile, reads, wall, hapi_seconds, top)


def _hapi_seconds(metrics: str) -> float:
    """The time the service has waited for HAPI's answers so far, by its own histogram."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("fhir_service_hapi_request_duration_seconds_sum")
    )


async def _enable(profile: cProfile.Profile) -> None:
    # On the app's own thread: the profiler follows the thread it is enabled in.
    profile.enable()


async def _disable(profile: cProfile.Profile) -> None:
    profile.disable()


def main() -> None:
    """Parse the options and profile the reads against a HAPI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--first-reads", action="store_true", help="read each contract once, none again"
    )
    args = parser.parse_args()
    with hapi_base_url() as hapi_url:
        run(hapi_url, args.reads, args.top, args.first_reads)


if __name__ == "__main__":
    main()
