"""Facade overhead: a contract created and read through the service, against HAPI directly.

    .venv/bin/python -m bench.facade [--iterations 200] [--rounds 10] [--warm-up 50]
                                     [--hapi-database h2|postgres]

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
turn, so load changes and background writes hit both alike. Target: the service's median at
most 1.25x HAPI's. Uses ``FHIR_BASE_URL`` when set, otherwise starts the local HAPI for the
run: in memory, or with ``--hapi-database postgres`` on PostgreSQL as in production, where HAPI
itself is slower and the same overhead is a smaller ratio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.bulk import EXAMPLES, generated
from bench.support import HAPI_DATABASES, hapi_base_url
from fhir_service.contract import Contract
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import READ_PARAMS
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.mapping.provenance import Author, change_entry
from fhir_service.mapping.tables import Language
from fhir_service.mapping.to_fhir import contract_to_bundle
from fhir_service.security.dev_keys import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    local_issuer_key,
    mint_token,
)
from fhir_service.security.roles import claims_for
from fhir_service.settings import Settings
from tests.support import free_port

TARGET = 1.25
READY_TIMEOUT = 300.0
TIMEOUT = 60.0
FHIR_JSON = "application/fhir+json"
AUDIT_PENDING = "fhir_service_audit_records_pending"
SUBJECT = "bench-facade"
CLIENT_ID = "bench-facade"


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


TIME_TYPES_SEED = Path(__file__).parents[1] / "mappings" / "booking" / "time-types.json"


@contextmanager
def running_service(hapi_url: str, workdir: Path) -> Iterator[str]:
    """``python -m fhir_service serve`` on ``hapi_url``, ready; yields its base URL.

    Its service DB and the local issuer's key live in ``workdir``, its log in
    ``workdir/service.log``. It is stopped with SIGTERM, as an orchestrator stops it.
    """
    port = free_port()
    env = os.environ | {
        "FHIR_SERVICE_HAPI_URL": hapi_url,
        "FHIR_SERVICE_DATA_DIR": str(workdir),
        "FHIR_SERVICE_DATABASE_URL": f"sqlite:///{workdir / 'service.db'}",
        "FHIR_SERVICE_PORT": str(port),
        "FHIR_SERVICE_AUTH_LOCAL_ISSUER": "true",
        # The examples' units define their time types, as `make run` has them: /ready waits.
        "FHIR_SERVICE_TIME_TYPES_SEED": str(TIME_TYPES_SEED),
    }
    log_path = workdir / "service.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fhir_service", "serve"], env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log_path)
        try:
            yield url
        except BaseException:
            # The log goes with the temporary directory; what the service said is often the why.
            print(f"service log (end):\n{_tail(log_path)}", file=sys.stderr)
            raise
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the service was not ready in {READY_TIMEOUT:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-4000:]


def tokens(workdir: Path, contracts: Sequence[Contract]) -> dict[tuple[str, str], str]:
    """An ``ehr`` token per responsible care unit of ``contracts``, keyed by (kind, value).

    A care unit's token reaches only the contracts that unit is responsible for, and the
    examples belong to four units.
    """
    # Made before the service starts, so the service reads this key rather than racing to
    # make its own.
    key, _ = local_issuer_key(Settings(data_dir=workdir).local_issuer_dir)
    minted = {}
    for unit in {_unit(c) for c in contracts}:
        claims = claims_for(
            "ehr",
            issuer=LOCAL_ISSUER,
            audience=LOCAL_AUDIENCE,
            subject=SUBJECT,
            organization="|".join(unit),
            client_id=CLIENT_ID,
            lifetime_seconds=24 * 3600,
        )
        minted[unit] = mint_token(key, claims)
    return minted


def _unit(contract: Contract) -> tuple[str, str]:
    unit = contract.responsible_clinician.organization.identifier
    return unit.kind.value, unit.value


def _transaction(contract: Contract, language: Language) -> dict[str, Any]:
    """The transaction the service sends HAPI to create ``contract`` for a ``tokens`` token."""
    bundle = contract_to_bundle(contract, language, new=True)
    unit = contract.responsible_clinician.organization.identifier
    author = Author(
        user=(LOCAL_ISSUER, SUBJECT),
        client_id=CLIENT_ID,
        organization=(system_for(unit.kind), unit.value),
    )
    recorded = datetime.now(UTC)
    bundle["entry"].append(
        change_entry(bundle, contract, author, activity="create", created=True, recorded=recorded)
    )
    return bundle


def _contract_json(contract: Contract) -> bytes:
    document = contract.model_dump(mode="json", exclude_none=True, exclude={"version"})
    return _compact(document)


def _compact(document: Any) -> bytes:
    # As httpx serializes ``json=``, which is how the service sends HAPI its Bundles.
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _created_careplan(response: httpx.Response) -> str | None:
    for entry in response.json().get("entry", []):
        answer = entry.get("response", {})
        if str(answer.get("location", "")).startswith("CarePlan/"):
            status = str(answer.get("status", ""))
            return None if status.startswith("201") else f"the CarePlan was not created: {status}"
    return "the transaction response names no CarePlan"


def _one_careplan(response: httpx.Response) -> str | None:
    entries = response.json().get("entry", [])
    matches = [e for e in entries if e.get("search", {}).get("mode", "match") == "match"]
    return None if len(matches) == 1 else f"{len(matches)} CarePlans matched, not 1"


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


def settle(service: httpx.Client) -> None:
    """Wait until the service has sent HAPI the audit records of the requests before.

    Otherwise its background writes land in the next turn, which may be HAPI's.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        metrics = service.get("/metrics").text
        pending = [
            float(fields[1])
            for fields in (line.split() for line in metrics.splitlines())
            if len(fields) == 2 and fields[0] == AUDIT_PENDING
        ]
        if pending == [0.0]:
            return
        time.sleep(0.05)
    raise SystemExit("the service's audit backlog did not drain within 60 s")


def measure(
    name: str,
    sides: tuple[Side, Side],
    requests: tuple[list[httpx.Request], list[httpx.Request]],
    warm_up: int,
    rounds: int,
) -> tuple[Latencies, Latencies]:
    """Both sides' latencies, taking turns in ``rounds``; the first ``warm_up`` are not kept."""
    service, _ = sides
    for side, mine in zip(sides, requests, strict=True):
        run_turn(side, mine[:warm_up])
    kept: tuple[list[float], list[float]] = ([], [])
    measured = len(requests[0]) - warm_up
    for number, part in enumerate(_slices(measured, rounds), start=1):
        order = (0, 1) if number % 2 else (1, 0)
        for index in order:
            settle(service.client)
            turn = requests[index][warm_up:][part]
            kept[index].extend(run_turn(sides[index], turn))
        print(
            f"  {name} round {number}/{rounds}: service median "
            f"{Latencies(kept[0]).median_ms:.1f} ms, hapi {Latencies(kept[1]).median_ms:.1f} ms"
            " so far",
            flush=True,
        )
    return Latencies(kept[0]), Latencies(kept[1])


def _slices(total: int, rounds: int) -> list[slice]:
    bounds = [total * r // rounds for r in range(rounds + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def report(name: str, service: Latencies, hapi: Latencies) -> bool:
    """Print one measurement's line; True when the service's median meets the target."""
    median = service.median_ms / hapi.median_ms
    p95 = service.p95_ms / hapi.p95_ms
    met = median <= TARGET
    print(
        f"{name:<7} service: median {service.median_ms:.1f} ms  p95 {service.p95_ms:.1f} ms | "
        f"hapi: median {hapi.median_ms:.1f} ms  p95 {hapi.p95_ms:.1f} ms | "
        f"ratio median {median:.2f} p95 {p95:.2f} "
        f"(target <= {TARGET:.2f}: {'met' if met else 'NOT met'})"
    )
    return met


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
        bearer = tokens(workdir, ours)
        with (
            running_service(hapi_url, workdir) as service_url,
            httpx.Client(base_url=service_url, timeout=TIMEOUT) as service_http,
            httpx.Client(base_url=hapi_url, timeout=TIMEOUT) as hapi_http,
        ):
            creating = (
                Side("service", service_http, 201),
                Side("hapi", hapi_http, 200, _created_careplan),
            )
            creates = (
                [
                    service_http.build_request(
                        "POST",
                        "/contracts",
                        content=_contract_json(c),
                        headers=_service_headers(bearer[_unit(c)], "application/json"),
                    )
                    for c in ours
                ],
                [
                    hapi_http.build_request(
                        "POST",
                        "",
                        content=_compact(_transaction(c, language)),
                        headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON},
                    )
                    for c in theirs
                ],
            )
            created = measure("create", creating, creates, args.warm_up, args.rounds)
            # Both read the same contracts, half of them stored by each side, in the same order.
            stored = [c for pair in zip(ours, theirs, strict=True) for c in pair][:count]
            reading = (
                Side("service", service_http, 200),
                Side("hapi", hapi_http, 200, _one_careplan),
            )
            reads = (
                [
                    service_http.build_request(
                        "GET", f"/contracts/{c.id}", headers=_service_headers(bearer[_unit(c)])
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
            read = measure("read", reading, reads, args.warm_up, args.rounds)
    print(
        f"HAPI {hapi_url}, {args.iterations} iterations a side per measurement "
        f"(after {args.warm_up} warm-up), {args.rounds} rounds, service and HAPI taking turns"
    )
    return all([report("create", *created), report("read", *read)])


def _service_headers(token: str, content_type: str | None = None) -> dict[str, str]:
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def main() -> None:
    """Parse the options, run the measurements against a HAPI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=50)
    parser.add_argument(
        "--hapi-database",
        choices=HAPI_DATABASES,
        default="h2",
        help="what the HAPI started for the run stores in: h2 in memory (as the tests run it) "
        "or a fresh PostgreSQL database (as docker-compose.yml runs it); not with FHIR_BASE_URL",
    )
    args = parser.parse_args()
    if args.iterations < 2 * args.rounds:
        parser.error("every round needs two requests a side: raise --iterations")
    if args.warm_up < 0:
        parser.error("--warm-up cannot be negative")
    with hapi_base_url(args.hapi_database) as hapi_url:
        run(hapi_url, args)


if __name__ == "__main__":
    main()
