"""What the benchmarks share: a HAPI to measure against, the service as a process, its callers'
tokens and bodies, its metrics, and timing."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from sqlalchemy import make_url

from fhir_service.cli.local_hapi import LocalHapi
from fhir_service.contract import Contract
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
from tests.postgres import fresh_database
from tests.support import free_port

__all__ = [
    "AUDIT_PENDING",
    "DELIVERIES_PENDING",
    "FHIR_JSON",
    "HAPI_DATABASES",
    "HAPI_REQUESTS",
    "POLL_SECONDS",
    "TIME_TYPES_SEED",
    "HapiDatabase",
    "HapiWatch",
    "Quieting",
    "Settling",
    "add_hapi_database_option",
    "compact_json",
    "contract_json",
    "cpu_ticks",
    "create_transaction",
    "created_careplan",
    "hapi_base_url",
    "median_ms",
    "median_seconds",
    "metric_total",
    "one_careplan",
    "p99_ms",
    "running_service",
    "service_headers",
    "service_process",
    "settle",
    "slices",
    "split_cores",
    "tokens",
    "unit_of",
]

HapiDatabase = Literal["h2", "h2-file", "postgres"]
HAPI_DATABASES: tuple[HapiDatabase, ...] = ("h2", "h2-file", "postgres")
FHIR_JSON = "application/fhir+json"
AUDIT_PENDING = "fhir_service_audit_records_pending"
TIME_TYPES_SEED = Path(__file__).parents[1] / "mappings" / "booking" / "time-types.json"
READY_TIMEOUT = 300.0


def add_hapi_database_option(parser: argparse.ArgumentParser) -> None:
    """``--hapi-database h2|h2-file|postgres``: what the HAPI started for the run stores in."""
    parser.add_argument(
        "--hapi-database",
        choices=HAPI_DATABASES,
        default="h2",
        help="what the HAPI started for the run stores in: h2 in memory (as the tests run it), "
        "h2-file in a temporary folder (as `fhir-service serve` runs its embedded HAPI) or a "
        "fresh PostgreSQL database (as docker-compose.yml runs it); not with FHIR_BASE_URL",
    )


@contextmanager
def hapi_base_url(database: HapiDatabase = "h2") -> Iterator[str]:
    """``FHIR_BASE_URL`` when set, otherwise a local HAPI started for the run.

    ``database``: ``h2`` runs it in memory, as the tests do; ``h2-file`` on an H2 file in a
    temporary folder, as ``fhir-service serve`` runs its embedded HAPI; ``postgres`` on a fresh
    database of the local PostgreSQL (installed and started when missing), as
    ``docker-compose.yml`` runs HAPI in production. HAPI's own latency differs between them, and
    with it every ratio: in memory, HAPI's heap holds every record stored, the service's audit
    events too, and its garbage collector works the harder for them.
    """
    configured = os.environ.get("FHIR_BASE_URL")
    if configured:
        yield configured.rstrip("/")
        return
    with ExitStack() as stack:
        server = LocalHapi(port=free_port())
        if database == "h2-file":
            server.data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        elif database == "postgres":
            url = make_url(stack.enter_context(fresh_database()))
            server.jdbc_url = f"jdbc:postgresql://{url.host}:{url.port}/{url.database}"
            server.jdbc_username, server.jdbc_password = url.username, url.password
        server.start()
        stack.callback(server.stop)
        server.wait_until_ready(300)
        yield server.base_url


# Cores: HAPI's apart from the service's, as on separate machines in production.


@contextmanager
def split_cores(hapi_url: str) -> Iterator[str]:
    """Give HAPI (and PostgreSQL, its database) the last core and this process, with the service
    it starts from now on and the clients, the others, until the block ends; yields who has
    which. PostgreSQL, which outlives the run, gets every core back at the end.

    On one machine the service and HAPI take CPU from each other, so a request through the
    service costs HAPI cycles the service spent; in production each has its own. Apart, HAPI has
    the same core in both sides' turns, and a ratio says what the service costs HAPI, not what
    it costs the machine. HAPI is found by its port on this machine's command lines.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("--split-cores needs at least 2 cores")
    hapi_core, ours = {cores[-1]}, set(cores[:-1])
    hapi = _hapi_processes(hapi_url)
    if not hapi:
        raise SystemExit(f"--split-cores: no HAPI started here for {hapi_url}")
    database = _processes(lambda _, name: name == "postgres")
    for pid in hapi + database:
        _pin(pid, hapi_core)
    _pin(os.getpid(), ours)
    try:
        yield (
            f"cores: HAPI ({len(hapi)} process) and PostgreSQL ({len(database)} processes) on "
            f"{sorted(hapi_core)}; the service and the clients on {sorted(ours)}"
        )
    finally:
        # Its backends started meanwhile were forked pinned: every one of them, not only those.
        for pid in _processes(lambda _, name: name == "postgres"):
            _pin(pid, set(cores))
        _pin(os.getpid(), set(cores))


def _hapi_processes(hapi_url: str) -> list[int]:
    """The Java processes of this machine serving ``hapi_url``, found by its port."""
    port = f"--hapi.port={httpx.URL(hapi_url).port}"
    return _processes(lambda argv, _: argv[:1] and "java" in argv[0] and port in argv)


def _processes(chosen: Callable[[list[str], str], Any]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile
        if chosen(argv, name):
            found.append(int(entry.name))
    return found


def _pin(pid: int, cores: set[int]) -> None:
    """Every thread of ``pid`` on ``cores``; the threads they start inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cores)
        except (ProcessLookupError, PermissionError):
            continue  # a thread that ended, or a process not ours


# HAPI's CPU, and its JIT compiler's: a fresh JVM is not yet the HAPI of production.

JIT_QUIET = 0.05
"""HAPI's JIT compiler is taken to have settled once it uses less than this share of HAPI's CPU
through a warm-up round: a share, not cores, since a lighter load compiles more slowly."""


class HapiWatch:
    """The CPU seconds HAPI's process has used, and its JIT compiler's share of them, when HAPI
    runs on this machine (found by its port); NaN otherwise.

    A freshly started HAPI compiles its hot code for minutes under load. Measured here (20
    clients, ``bench.load``): its compiler threads kept a third of a core of the two busy
    through the service's first measured turn, a fifth of HAPI's CPU, and fell quiet only
    after some ten minutes of load. HAPI's work is slower meanwhile, and the compiler takes CPU
    from every other process. A HAPI in production has run for days, so the benchmarks warm up
    until the compiler is quiet, and say what it used.

    Its garbage collector's share is told too: a HAPI on H2 in memory holds its database in its
    heap, and a run that fills it may make HAPI collect more, for whichever side is measured
    then.
    """

    def __init__(self, hapi_url: str) -> None:
        found = _hapi_processes(hapi_url)
        self.pid = found[0] if len(found) == 1 else None

    def seconds(self) -> dict[str, float]:
        """``hapi``: the CPU seconds of HAPI's process so far; ``jit``: of its compiler threads,
        ``gc``: of its garbage collector's, alive now (a thread the JVM ended meanwhile takes
        its seconds with it)."""
        unknown = {"hapi": math.nan, "jit": math.nan, "gc": math.nan}
        if self.pid is None:
            return unknown
        jit = gc = 0
        try:
            hapi = cpu_ticks(Path(f"/proc/{self.pid}/stat"))
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    name = (task / "comm").read_text()
                    if name.startswith(_COMPILER_THREADS):
                        jit += cpu_ticks(task / "stat")
                    elif name.startswith(_GC_THREADS):
                        gc += cpu_ticks(task / "stat")
        except OSError:
            return unknown  # HAPI is gone
        tick = os.sysconf("SC_CLK_TCK")
        return {"hapi": hapi / tick, "jit": jit / tick, "gc": gc / tick}


class Settling:
    """Warm-up rounds, taken until HAPI's JIT compiler uses less than ``JIT_QUIET`` of HAPI's
    CPU through one, or ``limit`` seconds have passed: call :meth:`begin` before each round and
    :meth:`ended` after it."""

    def __init__(self, watch: HapiWatch, limit: float) -> None:
        self.watch = watch
        self.limit = limit
        self.rounds = 0
        self.started = time.monotonic()
        self._used = self.watch.seconds()

    def begin(self) -> None:
        """A round begins."""
        self._used = self.watch.seconds()

    def ended(self) -> str | None:
        """A round ended: None to take another, or what to say of the warm-up."""
        self.rounds += 1
        used = self.watch.seconds()
        hapi, jit = (used[k] - self._used[k] for k in ("hapi", "jit"))
        share = jit / hapi if hapi > 0 else math.nan
        seconds = time.monotonic() - self.started
        took = f"warm-up: {self.rounds} rounds in {seconds:.0f} s; HAPI's JIT compiler"
        if math.isnan(share):
            return f"{took} not watched (HAPI is not a process of this machine)"
        if share < JIT_QUIET:
            return f"{took} quiet ({share:.0%} of HAPI's CPU in the last)"
        if seconds > self.limit:
            return f"{took} still busy ({share:.0%} of HAPI's CPU in the last)"
        print(f"  warm-up round {self.rounds}: JIT {share:.0%} of HAPI's CPU", flush=True)
        return None


_COMPILER_THREADS = ("C1 CompilerThre", "C2 CompilerThre")
"""HotSpot's compiler threads: "C1 CompilerThread0", "C2 CompilerThread1", ..."""
_GC_THREADS = ("GC Thread#", "G1 Main Marker", "G1 Conc#", "G1 Refine#", "VM Thread")
"""G1's collector threads, as HotSpot names them, and the VM thread that stops the world for
it (a JVM told to collect with the parallel collector names its threads "GC Thread#" too)."""


def cpu_ticks(stat: Path) -> int:
    """User and system CPU ticks from a ``/proc`` stat file: fields 14 and 15, counted after
    the name, which may hold spaces."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# The service, as its own process.


@contextmanager
def running_service(
    hapi_url: str, workdir: Path, settings: Mapping[str, str] | None = None
) -> Iterator[str]:
    """``python -m fhir_service serve`` on ``hapi_url``, ready; yields its base URL.

    See :func:`service_process`, which yields its process as well.
    """
    with service_process(hapi_url, workdir, settings) as (url, _):
        yield url


@contextmanager
def service_process(
    hapi_url: str, workdir: Path, settings: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m fhir_service serve`` on ``hapi_url``, ready; yields its base URL and process.

    Its service DB and the local issuer's key live in ``workdir``, its log in
    ``workdir/service.log``; ``settings`` are further ``FHIR_SERVICE_*`` settings, named without
    the prefix. It is stopped with SIGTERM, as an orchestrator stops it.
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
    env |= {f"FHIR_SERVICE_{name}": value for name, value in (settings or {}).items()}
    log_path = workdir / "service.log"
    with log_path.open("ab") as log:
        # Run in workdir: `-m` puts the current directory first on sys.path, so from a checkout
        # a comparison with another revision on PYTHONPATH would run this checkout's code.
        process = subprocess.Popen(
            [sys.executable, "-m", "fhir_service", "serve"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log_path)
        try:
            yield url, process
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


# Its callers: tokens, headers and bodies.


def tokens(workdir: Path, contracts: Sequence[Contract], caller: str) -> dict[tuple[str, str], str]:
    """An ``ehr`` token per responsible care unit of ``contracts``, keyed by (kind, value).

    A care unit's token reaches only the contracts that unit is responsible for, and the
    examples belong to four units. ``caller`` is the tokens' subject and client id, which the
    service names as the author of their changes.
    """
    # Made before the service starts, so the service reads this key rather than racing to
    # make its own.
    key, _ = local_issuer_key(Settings(data_dir=workdir).local_issuer_dir)
    minted = {}
    for unit in {unit_of(c) for c in contracts}:
        claims = claims_for(
            "ehr",
            issuer=LOCAL_ISSUER,
            audience=LOCAL_AUDIENCE,
            subject=caller,
            organization="|".join(unit),
            client_id=caller,
            lifetime_seconds=24 * 3600,
        )
        minted[unit] = mint_token(key, claims)
    return minted


def unit_of(contract: Contract) -> tuple[str, str]:
    """The (kind, value) of the care unit responsible for ``contract``: its token's key."""
    unit = contract.responsible_unit.identifier
    return unit.kind.value, unit.value


def service_headers(token: str, content_type: str | None = None) -> dict[str, str]:
    """The headers of a JSON facade request with ``token``."""
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def create_transaction(contract: Contract, language: Language, caller: str) -> dict[str, Any]:
    """The transaction the service sends HAPI to create ``contract`` for a ``tokens`` token of
    ``caller``: the contract's Bundle and the change's Provenance, naming the same author."""
    bundle = contract_to_bundle(contract, language, new=True)
    unit = contract.responsible_unit.identifier
    author = Author(
        user=(LOCAL_ISSUER, caller),
        client_id=caller,
        organization=(system_for(unit.kind), unit.value),
    )
    recorded = datetime.now(UTC)
    bundle["entry"].append(
        change_entry(bundle, contract, author, activity="create", created=True, recorded=recorded)
    )
    return bundle


def contract_json(contract: Contract) -> bytes:
    """``contract`` as the body of ``POST /contracts``."""
    document = contract.model_dump(mode="json", exclude_none=True, exclude={"version"})
    return compact_json(document)


def compact_json(document: Any) -> bytes:
    """``document`` as httpx serializes ``json=``, which is how the service sends HAPI its
    Bundles."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


# HAPI's answers.


def created_careplan(response: httpx.Response) -> str | None:
    """What is wrong with the answer to a contract's create transaction, or None: it must
    have created the CarePlan."""
    for entry in response.json().get("entry", []):
        answer = entry.get("response", {})
        if str(answer.get("location", "")).startswith("CarePlan/"):
            status = str(answer.get("status", ""))
            return None if status.startswith("201") else f"the CarePlan was not created: {status}"
    return "the transaction response names no CarePlan"


def one_careplan(response: httpx.Response) -> str | None:
    """What is wrong with the answer to a search for one contract's CarePlan, or None: it
    must have matched exactly one."""
    entries = response.json().get("entry", [])
    matches = [e for e in entries if e.get("search", {}).get("mode", "match") == "match"]
    return None if len(matches) == 1 else f"{len(matches)} CarePlans matched, not 1"


# Its metrics.


def metric_total(metrics: str, name: str) -> float:
    """The sum of the samples of ``name`` (every label set) in Prometheus text; NaN if none."""
    values = [
        float(fields[-1])
        for fields in (line.split() for line in metrics.splitlines())
        if len(fields) >= 2 and (fields[0] == name or fields[0].startswith(name + "{"))
    ]
    return math.fsum(values) if values else math.nan


QUIET_SECONDS = 2.0
QUIET_LIMIT = 120.0
POLL_SECONDS = 0.2
HAPI_REQUESTS = "fhir_service_hapi_requests_total"
DELIVERIES_PENDING = "fhir_service_webhook_deliveries_pending"


class Quieting:
    """Tells, from the service's ``/metrics`` scraped again and again, when it has gone quiet:
    no audit or webhook backlog, and no request sent to HAPI for ``QUIET_SECONDS``, so that its
    change feed is done with the writes before (HAPI calls the service's hook for each, and
    the feed reads them back). Raises ``SystemExit`` after ``QUIET_LIMIT`` seconds."""

    def __init__(self) -> None:
        self.sent = math.nan
        self.still_since = time.monotonic()
        self.deadline = self.still_since + QUIET_LIMIT

    def quiet(self, metrics: str) -> bool:
        """Whether the service is quiet, given its metrics now."""
        now = time.monotonic()
        if now > self.deadline:
            raise SystemExit(f"the service did not go quiet within {QUIET_LIMIT:.0f} s")
        sent = metric_total(metrics, HAPI_REQUESTS)
        # NaN (a backlog the service cannot read) is not 0: busy.
        busy = metric_total(metrics, AUDIT_PENDING) != 0
        busy = busy or metric_total(metrics, DELIVERIES_PENDING) != 0
        if busy or sent != self.sent:
            self.sent, self.still_since = sent, now
            return False
        return now - self.still_since >= QUIET_SECONDS


def settle(service: httpx.Client) -> None:
    """Wait until the service is quiet (``Quieting``): otherwise the background work of the
    requests before (audit records, the change feed's reads of their writes) lands in the next
    turn, which may be HAPI's."""
    quieting = Quieting()
    while not quieting.quiet(service.get("/metrics").text):
        time.sleep(POLL_SECONDS)


# Timing.


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``repeat`` calls of ``action``, after one warm-up call."""
    action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def median_ms(seconds: Sequence[float]) -> float:
    """The median, in milliseconds; NaN for none."""
    return statistics.median(seconds) * 1000 if seconds else math.nan


def p99_ms(seconds: Sequence[float]) -> float:
    """The 99th percentile, in milliseconds; NaN for fewer than two."""
    if len(seconds) < 2:
        return math.nan
    return statistics.quantiles(seconds, n=100, method="inclusive")[98] * 1000


def slices(total: int, rounds: int) -> list[slice]:
    """``total`` items cut into ``rounds`` consecutive parts as even as they come."""
    bounds = [total * r // rounds for r in range(rounds + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]
