"""Facade overhead: a contract created and read through the service, against HAPI directly.

    .venv/bin/python -m bench.facade [--iterations 200] [--rounds 10] [--warm-up 50]
                                     [--settle-limit 900] [--hapi-database h2|h2-file|postgres]

Two measurements, in the same run, against the same HAPI, each request timed by its client:

- create: ``POST /contracts`` with a contract's JSON, against POSTing straight to HAPI the
  transaction the service sends for it: ``contract_to_bundle(contract, language, new=True)``
  with the change's Provenance, naming the same author as the service's does. Every request
  carries a contract of its own (id and patient), so neither side ever finds one there.
- read: ``GET /contracts/{id}`` against the one search the service sends HAPI for it
  (``CarePlan?identifier=...`` with ``READ_PARAMS``), both sides reading the same contracts
  (those the create measurement stored). HAPI caches no search results (``StorageConfig``), so
  the second reader of a contract gains nothing from the first.

Contracts are the four example contracts, each copy with an id and a patient of its own (as in
``bench.bulk``). The service runs as its own process (``python -m fhir_service serve``) on a
temporary service DB, taking tokens of the local development issuer: role ``ehr``, one token
per responsible care unit of the examples. Each side has one keep-alive client and one request
in flight; bodies are serialized before the clock starts. The sides take turns in ``--rounds``
rounds, the first side alternating, and the service's audit backlog is drained before every
turn, so load changes and background writes hit both alike. Before the clock, both sides create
``--warm-up`` contracts each and both read them, in rounds, until HAPI's JIT compiler is quiet
or ``--settle-limit`` seconds have passed: a HAPI started for the run compiles its hot code for
minutes, slower meanwhile, where production's has long finished (``bench.support.HapiWatch``).
Each measurement then has its own ``--warm-up`` a side, not kept. Each round prints the medians
so far and the share of HAPI's CPU its garbage collector took in it (a HAPI on H2 in memory
holds its database in its heap), so a round slowed by HAPI's collecting says so. Targets: the
service's median at most 1.15x HAPI's for a create and 1.25x for a read, its p95 at most 1.5x
for both. Uses ``FHIR_BASE_URL`` when set, otherwise starts the local HAPI for the run: in
memory, with ``--hapi-database h2-file`` on an H2 file as ``fhir-service serve`` runs it, or with
``--hapi-database postgres`` on PostgreSQL as in production, where HAPI itself is slower and the
same overhead is a smaller ratio.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.bulk import EXAMPLES, generated
from bench.support import (
    FHIR_JSON,
    HapiWatch,
    Settling,
    add_hapi_database_option,
    compact_json,
    contract_json,
    create_transaction,
    created_careplan,
    hapi_base_url,
    one_careplan,
    running_service,
    service_headers,
    settle,
    slices,
    tokens,
    unit_of,
)
from fhir_service.contract import Contract
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import READ_PARAMS
from fhir_service.mapping.tables import Language
from fhir_service.settings import Settings

TARGETS = {"create": (1.15, 1.5), "read": (1.25, 1.5)}
"""The service's median and p95 at most these times HAPI's, for each measurement."""
TIMEOUT = 60.0
CALLER = "bench-facade"
"""The subject and client id of the tokens, named as the author of every change."""


@dataclass(frozen=True)
class Side:
    """One way of doing the work: a keep-alive client and the status every answer must have."""

    name: str
    client: httpx.Client
    expected: int
    check: Callable[[httpx.Response], str | None] | None = None
    """A further look at a right-status answer, after the clock: what is wrong, or None."""


@dataclass
class Latencies:
    """The seconds each request of one side took."""

    seconds: list[float]

    @property
    def median_ms(self) -> float:
        """The median, in milliseconds."""
        return statistics.median(self.seconds) * 1000

    @property
    def p95_ms(self) -> float:
        """The 95th percentile, in milliseconds."""
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[94] * 1000


def run_turn(side: Side, requests: Sequence[httpx.Request]) -> list[float]:
    """Send ``requests`` one after the other; their latencies. Stops the run on a wrong answer."""
    seconds = []
    for request in requests:
        started = time.perf_counter()
        try:
            response = side.client.send(request)
        except httpx.TransportError as exc:
            raise SystemExit(
                f"{side.name}: {request.method} {request.url} failed: {exc!r}"
            ) from exc
        seconds.append(time.perf_counter() - started)
        problem: str | None
        if response.status_code != side.expected:
            problem = f"answered {response.status_code}, not {side.expected}"
        else:
            problem = None if side.check is None else side.check(response)
        if problem is not None:
            raise SystemExit(
                f"{side.name}: {request.method} {request.url} {problem}:\n{response.text[:4000]}"
            )
    return seconds


def measure(
    name: str,
    sides: tuple[Side, Side],
    requests: tuple[list[httpx.Request], list[httpx.Request]],
    warm_up: int,
    rounds: int,
    watch: HapiWatch,
) -> tuple[Latencies, Latencies]:
    """Both sides' latencies, taking turns in ``rounds``; the first ``warm_up`` are not kept.
    Each round says its medians so far and the share of HAPI's CPU its garbage collector took."""
    service, _ = sides
    for side, mine in zip(sides, requests, strict=True):
        run_turn(side, mine[:warm_up])
    kept: tuple[list[float], list[float]] = ([], [])
    measured = len(requests[0]) - warm_up
    for number, part in enumerate(slices(measured, rounds), start=1):
        order = (0, 1) if number % 2 else (1, 0)
        used = watch.seconds()
        for index in order:
            settle(service.client)
            turn = requests[index][warm_up:][part]
            kept[index].extend(run_turn(sides[index], turn))
        now = watch.seconds()
        hapi, gc = (now[k] - used[k] for k in ("hapi", "gc"))
        print(
            f"  {name} round {number}/{rounds}: service median "
            f"{Latencies(kept[0]).median_ms:.1f} ms, hapi {Latencies(kept[1]).median_ms:.1f} ms"
            f" so far; HAPI's garbage collector {gc / hapi if hapi > 0 else math.nan:.0%} of its"
            " CPU in the round",
            flush=True,
        )
    return Latencies(kept[0]), Latencies(kept[1])


def report(name: str, service: Latencies, hapi: Latencies) -> bool:
    """Print one measurement's line; True when the service meets both its targets."""
    median = service.median_ms / hapi.median_ms
    p95 = service.p95_ms / hapi.p95_ms
    most_median, most_p95 = TARGETS[name]
    met = median <= most_median and p95 <= most_p95
    print(
        f"{name:<7} service: median {service.median_ms:.1f} ms  p95 {service.p95_ms:.1f} ms | "
        f"hapi: median {hapi.median_ms:.1f} ms  p95 {hapi.p95_ms:.1f} ms | "
        f"ratio median {median:.2f} p95 {p95:.2f} "
        f"(targets <= {most_median:.2f} and <= {most_p95:.2f}: {'met' if met else 'NOT met'})"
    )
    return met


def create_requests(
    clients: tuple[httpx.Client, httpx.Client],
    contracts: tuple[list[Contract], list[Contract]],
    bearer: dict[tuple[str, str], str],
    language: Language,
) -> tuple[list[httpx.Request], list[httpx.Request]]:
    """Each side's creates of its own ``contracts``: the service's ``POST /contracts``, and the
    transaction the service sends HAPI for each, straight to HAPI."""
    service_http, hapi_http = clients
    return (
        [
            service_http.build_request(
                "POST",
                "/contracts",
                content=contract_json(c),
                headers=service_headers(bearer[unit_of(c)], "application/json"),
            )
            for c in contracts[0]
        ],
        [
            hapi_http.build_request(
                "POST",
                "",
                content=compact_json(create_transaction(c, language, CALLER)),
                headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON},
            )
            for c in contracts[1]
        ],
    )


def read_requests(
    clients: tuple[httpx.Client, httpx.Client],
    stored: Sequence[Contract],
    bearer: dict[tuple[str, str], str],
) -> tuple[list[httpx.Request], list[httpx.Request]]:
    """Both sides' reads of the ``stored`` contracts, in the same order: ``GET /contracts/{id}``
    and the one search the service sends HAPI for it."""
    service_http, hapi_http = clients
    return (
        [
            service_http.build_request(
                "GET", f"/contracts/{c.id}", headers=service_headers(bearer[unit_of(c)])
            )
            for c in stored
        ],
        [
            hapi_http.build_request(
                "GET",
                "/CarePlan",
                params=[("identifier", f"{urls.ID_CONTRACT}|{c.id}"), *READ_PARAMS],
                headers={"Accept": FHIR_JSON},
            )
            for c in stored
        ],
    )


def settle_jit(
    watch: HapiWatch,
    creating: tuple[Side, Side],
    reading: tuple[Side, Side],
    bearer: dict[tuple[str, str], str],
    run_id: str,
    language: Language,
    args: argparse.Namespace,
) -> str:
    """Creates and reads on both sides, in rounds of ``--warm-up`` a side, until HAPI's JIT
    compiler is quiet (``bench.support.Settling``); says how it went."""
    clients = (creating[0].client, creating[1].client)
    settling = Settling(watch, args.settle_limit)
    while True:
        settling.begin()
        made = generated(2 * args.warm_up, f"{run_id}-w{settling.rounds}")
        ours, theirs = made[: args.warm_up], made[args.warm_up :]
        for side, requests in zip(
            creating, create_requests(clients, (ours, theirs), bearer, language), strict=True
        ):
            run_turn(side, requests)
        for side, requests in zip(reading, read_requests(clients, made, bearer), strict=True):
            run_turn(side, requests)
        said = settling.ended()
        if said is not None:
            return said


def run(hapi_url: str, args: argparse.Namespace) -> bool:
    """Start the service, run both measurements, print them; True when both targets are met."""
    language: Language = Settings().narrative_language
    run_id = f"bench-facade-{random.randrange(16**8):08x}"
    count = args.warm_up + args.iterations
    # Copy n goes to the n-th request of each side: the same example on both, whatever count.
    examples = len(list(EXAMPLES.glob("*.json")))
    ours = generated(count, f"{run_id}-s")
    theirs = generated(count, f"{run_id}-h", first=-(-count // examples) * examples)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        bearer = tokens(workdir, ours, CALLER)
        with (
            running_service(hapi_url, workdir) as service_url,
            httpx.Client(base_url=service_url, timeout=TIMEOUT) as service_http,
            httpx.Client(base_url=hapi_url, timeout=TIMEOUT) as hapi_http,
        ):
            clients = (service_http, hapi_http)
            creating = (
                Side("service", service_http, 201),
                Side("hapi", hapi_http, 200, created_careplan),
            )
            reading = (
                Side("service", service_http, 200),
                Side("hapi", hapi_http, 200, one_careplan),
            )
            watch = HapiWatch(hapi_url)
            warmed = settle_jit(watch, creating, reading, bearer, run_id, language, args)
            print(warmed, flush=True)
            creates = create_requests(clients, (ours, theirs), bearer, language)
            created = measure("create", creating, creates, args.warm_up, args.rounds, watch)
            # Both read the same contracts, half of them stored by each side, in the same order.
            stored = [c for pair in zip(ours, theirs, strict=True) for c in pair][:count]
            reads = read_requests(clients, stored, bearer)
            read = measure("read", reading, reads, args.warm_up, args.rounds, watch)
    print(
        f"HAPI {hapi_url}, {args.iterations} iterations a side per measurement "
        f"(after {args.warm_up} warm-up), {args.rounds} rounds, service and HAPI taking turns; "
        f"{warmed}"
    )
    return all([report("create", *created), report("read", *read)])


def main() -> None:
    """Parse the options, run the measurements against a HAPI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=50)
    parser.add_argument(
        "--settle-limit",
        type=float,
        default=900,
        help="seconds of warm-up rounds at most, repeated while HAPI's JIT compiler is busy",
    )
    add_hapi_database_option(parser)
    args = parser.parse_args()
    if args.iterations < 2 * args.rounds:
        parser.error("every round needs two requests a side: raise --iterations")
    if args.warm_up < 1 or args.settle_limit < 0:
        parser.error("--warm-up must be at least 1, --settle-limit not negative")
    with hapi_base_url(args.hapi_database) as hapi_url:
        run(hapi_url, args)


if __name__ == "__main__":
    main()
