"""Throughput under load: clients of a realistic mix through the service, against HAPI alone.

    .venv/bin/python -m bench.load [--clients 20] [--seconds 60] [--rounds 2] [--warm-up 10]
                                   [--settle-limit 900] [--contracts 200] [--drain-limit 120]
                                   [--hapi-database h2|h2-file|postgres] [--split-cores]

``--clients`` clients run at once on each side, each sending one request after the other, as
fast as the answers come. Each request is of one kind, drawn at random by weight: 40 reads, 15
JSON searches, 15 FHIR searches, 15 creates, 15 bookings (a client's booking books its agreed
time when it is free and cancels it when booked, so bookings are book and cancel in turn).
Client n of each side draws from a generator seeded alike, so both sides send the same sequence
of kinds and contracts. In the same run, against the same HAPI:

- service, with ``ehr`` tokens of the contracts' units (bookings: a booking platform's token):
  read ``GET /contracts/{id}``; search ``GET /contracts?patient=...``; FHIR search
  ``GET /fhir/CarePlan?patient.identifier=...``; create ``POST /contracts``; book and cancel
  ``POST /booking/contracts/{id}/times/{key}/book`` (``{"slot"}``) and ``.../cancel``.
- hapi: the requests the service sends HAPI for each (as a recording proxy between the two
  showed), straight to HAPI: read, the one ``CarePlan`` search with ``READ_PARAMS``;
  search, the store's ``CarePlan`` search by patient and the token's unit (the store's own
  ``criteria``, its paging, ``READ_PARAMS``); FHIR search, the search narrowed to the unit and
  then the guard's search for the matches' contracts (``CarePlan?identifier=...`` with its five
  includes), in sequence as one request; create, the transaction the service sends (as in
  ``bench.facade``); book and cancel, the contract's search, the Slot's read and the transaction,
  sent by the service's own ``BookingService`` (``bench.booking.HapiBooker``), as one request.

Reads and searches ask for ``--contracts`` contracts (the four examples in turn, each with a
patient of its own) stored through the service before the clock, the same on both sides. Every
create is a new contract of its own, its body made before the clock (the HAPI side's transaction
too). Each client books its own agreed time (of an elderly-psychiatry contract) in a slot of its
own, published before the clock, so bookings never contend (``bench.booking`` measures that).
Every request is timed by its client, with one keep-alive connection per client; answers are
checked by status only while the clock runs, and in full once per kind and side before the
warm-up. A wrong status or failed request is counted, named, and makes the run exit 1.

The sides take turns: ``--rounds`` rounds, each one turn a side of ``--seconds``/``--rounds``
seconds, the first side alternating, after ``--warm-up`` seconds a side not kept, taken again
until HAPI's JIT compiler is quiet through a turn a side, or ``--settle-limit`` seconds have
passed: a HAPI started for the run compiles its hot code for minutes under load, slower
meanwhile, where production's has long finished (``bench.support.HapiWatch``); the report says
how much CPU it and its compiler used in each side's turns. Before every
turn the service is left to go quiet (no audit or delivery backlog, no request to HAPI for two
seconds), so the background work of one turn does not land in the next. The service keeps
running during HAPI's turns and its change feed reads HAPI's writes there too (HAPI wakes it);
the report says how many requests the service sent HAPI in each side's turns, and the CPU its
process, this one and the whole machine used in them: HAPI, the service and the clients share
the machine's cores, so what the service's process burns is taken from HAPI. With
``--split-cores`` they do not: HAPI (and PostgreSQL) run on the last core and the service and
the clients on the others, in both sides' turns, as production runs them on machines of their
own; HAPI then has the same core whichever side sends, and the ratios say what the service
costs HAPI rather than what it costs a shared machine.

Webhooks: a receiver per unit is registered (``careUnit``) for each service turn and removed
after it, so that deliveries flow in the service's turns, and none about the HAPI side's writes
loads the service in HAPI's; receivers keep their connections open between deliveries. When a
service turn ends, the bench reads the audit backlog and the webhook deliveries pending from
the service's ``/metrics``, then polls until both are 0 and
every version HAPI's ``_history`` holds of the CarePlans, CareTeams and Appointments the service
wrote in the turn has reached the receivers (as ``tests/faults/test_load_webhooks.py`` counts
them), and says how long each took after the load ended; what never arrives within
``--drain-limit`` seconds is lost. It says too how fast events arrived during the load against
how fast they were made: when slower, the backlog grows with the load's length, and a longer
turn (fewer ``--rounds``) drains later. Events about other contracts (the HAPI side's, found by
the change feed only once a service turn had begun) are counted apart.

Targets, printed beside the figures and not asserted: the service's throughput at least 0.75x
HAPI's for the same mix, its p99 at most 1.5x; every webhook event delivered within 30 s of the
end of the load, none lost. The throughput is printed twice: as answered during the turns, and
sustained, with the time the audit records a turn left waiting took to reach HAPI after it added
to the turn's: that is HAPI's work for the turn's requests too, and a load that lasted would have
to make room for it. The service runs as its own process on a temporary SQLite service
DB, as ``docker-compose.yml`` runs it, with the local development issuer (see
``bench.support.service_process``). Uses ``FHIR_BASE_URL`` when set, otherwise starts the local
HAPI for the run: in memory, with ``--hapi-database h2-file`` on an H2 file as ``fhir-service
serve`` runs it, or with ``--hapi-database postgres`` on PostgreSQL as in production. In memory,
HAPI's heap holds every record stored, and its garbage collector's work grows with the service's
audit events, which the HAPI side does not write.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import booking
from bench.bulk import generated
from bench.support import (
    AUDIT_PENDING,
    DELIVERIES_PENDING,
    FHIR_JSON,
    POLL_SECONDS,
    HapiWatch,
    Quieting,
    Settling,
    add_hapi_database_option,
    compact_json,
    contract_json,
    cpu_ticks,
    create_transaction,
    created_careplan,
    hapi_base_url,
    median_ms,
    metric_total,
    one_careplan,
    p99_ms,
    service_headers,
    service_process,
    split_cores,
    tokens,
    unit_of,
)
from fhir_service.contract import Contract, Identifier
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import READ_PARAMS
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.mapping.ownership import contract_of
from fhir_service.mapping.tables import Language
from fhir_service.metrics import Metrics
from fhir_service.settings import Settings
from fhir_service.store.search import UNIT_OF_CONTRACT, criteria
from fhir_service.sync.changes import WATCHED_TYPES
from tests.webhook_receiver import Receiver, running_receiver

CALLER = "bench-load"
"""The subject and client id of the ``ehr`` tokens, named as the author of their creates."""
MIX = {"read": 40, "search": 15, "fhir-search": 15, "create": 15, "booking": 15}
KINDS = ("read", "search", "fhir-search", "create", "book", "cancel")
HAPI_CALLS = {"read": 1, "search": 1, "fhir-search": 2, "create": 1, "book": 3, "cancel": 3}
"""The requests the service sends HAPI for each kind while the client waits."""
THROUGHPUT_TARGET = 0.75
P99_TARGET = 1.5
DRAIN_TARGET = 30.0
TIMEOUT = 60.0
SEARCH_COUNT = 20
"""The page size of ``GET /contracts`` when none is asked for, which the store sends HAPI."""
GUESSED_RATE = 5.0
"""Requests a second a client is assumed to make before any turn has shown its real rate."""
SECRET = "bench-load-webhook-secret-long-enough"
WAITED = "fhir_service_hapi_request_duration_seconds"
SERVED = "fhir_service_http_request_duration_seconds"
CPU_OF = ("service", "bench", "machine", "hapi", "jit", "gc")
"""Whose CPU time is told: the service's process, this one (the clients and the webhook
receivers), the machine's cores together (everyone's), HAPI's process and, of that, its JIT
compiler's and its garbage collector's threads (``bench.support.HapiWatch``)."""
Key = tuple[str, str, str]
"""A version of a record: type, id, version."""


class WrongAnswerError(Exception):
    """A request answered otherwise than it must; counted against its side."""


@dataclass(frozen=True)
class Target:
    """A stored contract that reads and searches ask for, and what each side sends for it."""

    contract_id: str
    headers: dict[str, str]
    """The JSON facade's, with a token of the contract's unit."""
    search: httpx.QueryParams
    fhir_search: httpx.QueryParams
    hapi_read: httpx.QueryParams
    hapi_search: httpx.QueryParams
    hapi_fhir_search: tuple[httpx.QueryParams, httpx.QueryParams]


def target(contract: Contract, token: str) -> Target:
    """What each side sends to read and search ``contract`` with its unit's ``token``."""
    patient = contract.patient.identifier
    unit = contract.responsible_unit.identifier
    patient_token = _token(patient)
    # As ContractReads.search pages a search, for the first page of the default size.
    paging = [("_sort", "_pid"), ("_count", str(SEARCH_COUNT)), ("_offset", "0")]
    # What CallerReads.search adds for a unit's token, then what FhirGuard asks of the matches'
    # contracts to judge them (_learn_contracts).
    narrowed = (("patient.identifier", patient_token), (UNIT_OF_CONTRACT, _token(unit)))
    judged = (
        ("identifier", f"{urls.ID_CONTRACT}|{contract.id}"),
        ("_include", "CarePlan:subject"),
        ("_include", "CarePlan:responsible-unit"),
        ("_include", "CarePlan:goal"),
        ("_include", "CarePlan:activity-reference"),
        ("_include", "CarePlan:care-team"),
        ("_count", "1"),
    )
    query = httpx.QueryParams
    return Target(
        contract_id=contract.id,
        headers=service_headers(token),
        search=query([("patient", f"{patient.kind.value}|{patient.value}")]),
        fhir_search=query([("patient.identifier", patient_token)]),
        hapi_read=query([("identifier", f"{urls.ID_CONTRACT}|{contract.id}"), *READ_PARAMS]),
        hapi_search=query(
            (*criteria(patient, None, unit, None, None, None), *paging, *READ_PARAMS)
        ),
        hapi_fhir_search=(query(narrowed), query(judged)),
    )


def _token(identifier: Identifier) -> str:
    return f"{system_for(identifier.kind)}|{identifier.value}"


@dataclass(frozen=True)
class Prepared:
    """A create's body, made before the clock, and the headers it goes with."""

    contract_id: str
    body: bytes
    headers: dict[str, str]


class Creates:
    """One side's create bodies, each a new contract of its own (id and patient)."""

    def __init__(self, run: str, make: Callable[[Contract], Prepared]) -> None:
        self.run = run
        self.make = make
        self.ready: deque[Prepared] = deque()
        self.batches = 0
        self.taken = 0
        self.peak = 0.0
        """The most creates a second of a turn so far: how many bodies the next one needs."""
        self.late = 0
        """Made while the clock ran, as the bodies made before it ran out."""

    def fill(self, count: int) -> None:
        """Make bodies until ``count`` are ready."""
        missing = count - len(self.ready)
        if missing > 0:
            self.batches += 1
            self.ready.extend(self.make(c) for c in generated(missing, f"{self.run}{self.batches}"))

    def take(self) -> Prepared:
        """The next body; one made now when none is left."""
        if not self.ready:
            self.late += 1
            self.fill(1)
        self.taken += 1
        return self.ready.popleft()


@dataclass
class Booking:
    """A client's own agreed time and the slot it books it in."""

    contract_id: str
    key: str
    slot: str
    booked: bool = False


class Client:
    """One client of one side: its connection, its agreed time and its picks, which client n
    of the other side draws alike."""

    def __init__(self, seed: str, http: httpx.AsyncClient, own: Booking, targets: int) -> None:
        self.picks = random.Random(seed)
        self.http = http
        self.booking = own
        self.targets = targets

    def next(self) -> tuple[str, int]:
        """The kind of the next request and the index of the stored contract it asks for."""
        kind = self.picks.choices(list(MIX), weights=list(MIX.values()))[0]
        # Drawn for every request, so both sides' generators stay in step.
        index = self.picks.randrange(self.targets)
        if kind == "booking":
            kind = "cancel" if self.booking.booked else "book"
        return kind, index


class Side(Protocol):
    """One way of doing the mix."""

    name: str
    creates: Creates

    async def send(
        self, kind: str, asked: Target, client: Client
    ) -> tuple[float, list[httpx.Response]]:
        """Do one request of ``kind``: its seconds and answers. ``WrongAnswerError`` when wrong."""
        ...


async def exchange(
    http: httpx.AsyncClient, requests: Sequence[httpx.Request], expected: int
) -> tuple[float, list[httpx.Response]]:
    """Send ``requests`` one after the other; their time together and their answers."""
    answers = []
    started = time.perf_counter()
    for request in requests:
        answers.append(await http.send(request))
    seconds = time.perf_counter() - started
    for request, answer in zip(requests, answers, strict=True):
        if answer.status_code != expected:
            raise WrongAnswerError(
                f"{request.method} {request.url.path} answered {answer.status_code}, not "
                f"{expected}: {answer.text[:300]}"
            )
    return seconds, answers


class ServiceSide:
    """The mix through the service's facades."""

    name = "service"

    def __init__(self, creates: Creates, platform: str) -> None:
        self.creates = creates
        self.booking_headers = service_headers(platform, "application/json")
        self.created: list[str] = []
        """The contracts created so far: their changes reach the webhooks."""

    async def send(
        self, kind: str, asked: Target, client: Client
    ) -> tuple[float, list[httpx.Response]]:
        """Through the JSON facade, the FHIR facade, the booking facade."""
        http = client.http
        expected = 200
        created = None
        if kind == "read":
            request = http.build_request(
                "GET", f"/contracts/{asked.contract_id}", headers=asked.headers
            )
        elif kind == "search":
            request = http.build_request(
                "GET", "/contracts", params=asked.search, headers=asked.headers
            )
        elif kind == "fhir-search":
            headers = asked.headers | {"Accept": FHIR_JSON}
            request = http.build_request(
                "GET", "/fhir/CarePlan", params=asked.fhir_search, headers=headers
            )
        elif kind == "create":
            made = self.creates.take()
            request = http.build_request(
                "POST", "/contracts", content=made.body, headers=made.headers
            )
            expected, created = 201, made.contract_id
        else:
            own = client.booking
            body = {"slot": own.slot} if kind == "book" else {"reason": "Bench: cancelled again"}
            request = http.build_request(
                "POST",
                f"/booking/contracts/{own.contract_id}/times/{own.key}/{kind}",
                content=compact_json(body),
                headers=self.booking_headers,
            )
        answer = await exchange(http, [request], expected)
        if created is not None:
            self.created.append(created)
        elif kind in ("book", "cancel"):
            client.booking.booked = kind == "book"
        return answer


class HapiSide:
    """The same mix as the HAPI requests the service sends for it, straight to HAPI."""

    name = "hapi"

    def __init__(self, creates: Creates, booker: booking.HapiBooker) -> None:
        self.creates = creates
        self.booker = booker

    async def send(
        self, kind: str, asked: Target, client: Client
    ) -> tuple[float, list[httpx.Response]]:
        """Raw requests, or the service's ``BookingService`` for book and cancel."""
        http = client.http
        accept = {"Accept": FHIR_JSON}
        if kind in ("book", "cancel"):
            return await self._booking(kind, client.booking)
        if kind == "read":
            requests = [
                http.build_request("GET", "/CarePlan", params=asked.hapi_read, headers=accept)
            ]
        elif kind == "search":
            requests = [
                http.build_request("GET", "/CarePlan", params=asked.hapi_search, headers=accept)
            ]
        elif kind == "fhir-search":
            requests = [
                http.build_request("GET", "/CarePlan", params=params, headers=accept)
                for params in asked.hapi_fhir_search
            ]
        else:
            made = self.creates.take()
            requests = [http.build_request("POST", "", content=made.body, headers=made.headers)]
        return await exchange(http, requests, 200)

    async def _booking(self, kind: str, own: Booking) -> tuple[float, list[httpx.Response]]:
        outcome = booking.BOOKED
        started = time.perf_counter()
        if kind == "book":
            outcome = await self.booker.book(own.contract_id, own.key, own.slot)
        else:
            await self.booker.cancel(own.contract_id, own.key)
        seconds = time.perf_counter() - started
        if outcome != booking.BOOKED:
            # Each client books a slot of its own: nobody else can have taken it.
            raise WrongAnswerError(f"booking {own.contract_id}/{own.key} found the slot {outcome}")
        own.booked = kind == "book"
        return seconds, []


@dataclass
class Tally:
    """What one side's clients did in the turns counted."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0
    """The turns' wall time together."""
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CPU_OF, 0.0))
    """CPU seconds in the turns, of each of ``CPU_OF``."""
    service: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """What the service's metrics counted in the turns (see ``service_figures``)."""

    def everything(self) -> list[float]:
        """The seconds of every right answer."""
        return [s for kind in KINDS for s in self.seconds[kind]]

    def rate(self, kind: str | None = None) -> float:
        """Right answers a second, of ``kind`` or of all."""
        done = len(self.everything() if kind is None else self.seconds[kind])
        return done / self.wall if self.wall else math.nan

    def fail(self, kind: str, problem: str) -> None:
        """Count a wrong answer; the first few are kept to be named."""
        self.errors[kind] += 1
        if len(self.problems) < 10:
            self.problems.append(f"{kind}: {problem}")


async def turn(
    side: Side, clients: Sequence[Client], targets: Sequence[Target], seconds: float, tally: Tally
) -> None:
    """Every client sends its requests one after the other until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds

    async def work(client: Client) -> None:
        while time.monotonic() < deadline:
            kind, index = client.next()
            try:
                took, _ = await side.send(kind, targets[index], client)
            # Whatever fails one request is counted against its side, named in the report, and
            # makes the run fail; the others go on, so that one failure shows its extent.
            except Exception as exc:
                tally.fail(kind, f"{type(exc).__name__}: {exc}"[:500])
            else:
                tally.seconds[kind].append(took)

    started = time.perf_counter()
    await asyncio.gather(*(work(c) for c in clients))
    tally.wall += time.perf_counter() - started


# Before the clock: one request of each kind a side, its answers read in full.


async def probe(side: Side, client: Client, asked: Target) -> list[str]:
    """What is wrong with each side's answers to one request of every kind (and the booking
    state it leaves: free, as it found it)."""
    problems = []
    for kind in KINDS:
        try:
            _, answers = await side.send(kind, asked, client)
        except Exception as exc:
            problems.append(f"{side.name} {kind}: {type(exc).__name__}: {exc}")
            continue
        for answer in answers:
            problem = _looks_wrong(side.name, kind, answer, asked)
            if problem is not None:
                problems.append(f"{side.name} {kind}: {problem}")
    return problems


def _looks_wrong(side: str, kind: str, answer: httpx.Response, asked: Target) -> str | None:
    if side == "hapi" and kind == "create":
        return created_careplan(answer)
    if kind == "fhir-search" or (side == "hapi" and kind in ("read", "search")):
        # A Bundle: HAPI's, or the FHIR facade's, of the one contract of the patient.
        return one_careplan(answer)
    if kind in ("read", "search") and asked.contract_id not in answer.text:
        return f"the answer does not name {asked.contract_id}"
    return None


# Between the turns: the service's backlogs, webhooks and quiet.


async def scrape(control: httpx.AsyncClient) -> str:
    """The service's ``/metrics``."""
    return (await control.get("/metrics")).text


async def quiet(control: httpx.AsyncClient) -> None:
    """Wait until the service is quiet (``bench.support.Quieting``)."""
    quieting = Quieting()
    while True:
        if quieting.quiet(await scrape(control)):
            return
        await asyncio.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class Hooked:
    """A webhook registered for a unit: its id and the token that removes it."""

    id: str
    token: str


async def register(
    control: httpx.AsyncClient, bearer: dict[tuple[str, str], str], receivers: dict[str, Receiver]
) -> list[Hooked]:
    """A webhook per unit, each to its own receiver, registered with the unit's token."""
    hooked = []
    for (kind, value), token in bearer.items():
        body = {
            "url": receivers[value].url,
            "secret": SECRET,
            "careUnit": {"kind": kind, "value": value},
        }
        answer = await control.post(
            "/webhooks", json=body, headers=service_headers(token, "application/json")
        )
        if answer.status_code != 201:
            raise SystemExit(f"registering a webhook answered {answer.status_code}: {answer.text}")
        hooked.append(Hooked(str(answer.json()["id"]), token))
    return hooked


async def unregister(control: httpx.AsyncClient, hooked: list[Hooked]) -> None:
    """Remove the webhooks."""
    for hook in hooked:
        answer = await control.delete(f"/webhooks/{hook.id}", headers=service_headers(hook.token))
        if answer.status_code != 204:
            raise SystemExit(f"removing a webhook answered {answer.status_code}: {answer.text}")


def announced(receivers: dict[str, Receiver], contracts: set[str] | None = None) -> list[Key]:
    """The record version of each event the receivers accepted (about ``contracts`` only,
    when given)."""
    return [
        (e["resource"]["resourceType"], e["resource"]["id"], e["resource"]["versionId"])
        for receiver in receivers.values()
        for e in receiver.events()
        if contracts is None or (e.get("contract") or {}).get("id") in contracts
    ]


async def history_versions(hapi: HapiClient, since: datetime, contracts: set[str]) -> set[Key]:
    """Every version of a watched record of ``contracts`` written since ``since``, as HAPI's
    ``_history`` lists them: what the webhooks must be told."""
    found: set[Key] = set()
    for kind in WATCHED_TYPES:
        params = [("_since", since.isoformat(timespec="milliseconds")), ("_count", "500")]
        result = await hapi.history(kind, params=params, max_pages=1000)
        for resource in result.resources:
            if contract_of(resource) in contracts:
                found.add((kind, str(resource["id"]), str(resource["meta"]["versionId"])))
    return found


@dataclass(frozen=True)
class Drain:
    """The service's backlogs when a turn's load ended, and how they drained."""

    loaded: float
    """How long the turn's load lasted, in seconds."""
    audit: float
    deliveries: float
    unreceived: int
    """Events of the turn not at the receivers yet when the load ended."""
    events: int
    """Versions of the turn's records in HAPI's history: the events due."""
    lost: int
    audit_seconds: float | None
    webhook_seconds: float | None
    """When the last due event had arrived; None when some never did."""


async def drain(
    control: httpx.AsyncClient,
    hapi: HapiClient,
    receivers: dict[str, Receiver],
    since: datetime,
    contracts: set[str],
    loaded: float,
    ended: float,
    limit: float,
) -> Drain:
    """Watch the backlogs drain that ``loaded`` seconds of load on ``contracts``, since
    ``since``, left when it ``ended`` (monotonic); for ``limit`` seconds at most."""
    metrics = await scrape(control)
    audit, deliveries = (
        metric_total(metrics, AUDIT_PENDING),
        metric_total(metrics, DELIVERIES_PENDING),
    )
    arrived = dict.fromkeys(announced(receivers, contracts), 0.0)
    # Read while the backlogs drain, so that reading them is not counted as draining.
    due = asyncio.create_task(history_versions(hapi, since, contracts))
    audit_seconds = None
    while True:
        elapsed = time.monotonic() - ended
        metrics = await scrape(control)
        if audit_seconds is None and metric_total(metrics, AUDIT_PENDING) == 0:
            audit_seconds = elapsed
        for key in announced(receivers, contracts):
            arrived.setdefault(key, elapsed)
        delivered = (
            due.done()
            and due.result() <= arrived.keys()
            and metric_total(metrics, DELIVERIES_PENDING) == 0
        )
        if (audit_seconds is not None and delivered) or elapsed > limit:
            break
        await asyncio.sleep(POLL_SECONDS)
    expected = await due
    missing = expected - arrived.keys()
    return Drain(
        loaded=loaded,
        audit=audit,
        deliveries=deliveries,
        unreceived=sum(1 for k in expected if arrived.get(k, math.inf) > 0),
        events=len(expected),
        lost=len(missing),
        audit_seconds=audit_seconds,
        webhook_seconds=None if missing else max((arrived[k] for k in expected), default=0.0),
    )


def service_figures(metrics: str) -> defaultdict[str, float]:
    """What the service's ``/metrics`` have counted so far: its requests to HAPI (``waited``,
    with ``waited_seconds`` they took) and the requests it handled, HAPI's calls to its hook and
    the bench's scrapes left out (``served``, ``served_seconds``)."""
    figures: defaultdict[str, float] = defaultdict(float)
    names = {
        f"{WAITED}_count": "waited",
        f"{WAITED}_sum": "waited_seconds",
        f"{SERVED}_count": "served",
        f"{SERVED}_sum": "served_seconds",
    }
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if sample.name in names and not route.startswith(("/hooks", "/metrics")):
                figures[names[sample.name]] += sample.value
    return figures


def cpu_seconds(service: int, hapi: HapiWatch) -> dict[str, float]:
    """The CPU seconds used so far by each of ``CPU_OF``, ``service`` the service's process id;
    NaN where Linux's ``/proc`` is not there to tell."""
    tick = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys(CPU_OF, math.nan) | hapi.seconds()
    used["bench"] = time.process_time()
    with contextlib.suppress(OSError, ValueError, IndexError):
        used["service"] = cpu_ticks(Path(f"/proc/{service}/stat")) / tick
    with contextlib.suppress(OSError, ValueError, IndexError):
        # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        used["machine"] = (sum(ticks) - ticks[3] - ticks[4]) / tick
    return used


# The run.


@dataclass
class Run:
    """Everything the turns need, and what they found."""

    args: argparse.Namespace
    control: httpx.AsyncClient
    """The bench's own connection to the service: metrics, webhooks."""
    hapi: HapiClient
    bearer: dict[tuple[str, str], str]
    receivers: dict[str, Receiver]
    targets: list[Target]
    service_pid: int
    hapi_watch: HapiWatch
    service: ServiceSide
    hapi_side: HapiSide
    clients: tuple[list[Client], list[Client]]
    tallies: tuple[Tally, Tally] = field(default_factory=lambda: (Tally(), Tally()))
    drains: list[Drain] = field(default_factory=list)
    warmed: str = ""
    """How the warm-up went (``warm_up``)."""

    async def warm_up(self) -> None:
        """A turn a side, not counted, again while HAPI's JIT compiler is busy (``Settling``);
        ``warmed`` says how it went."""
        settling = Settling(self.hapi_watch, self.args.settle_limit)
        while True:
            settling.begin()
            for index in (0, 1):
                await self.take_turn(index, self.args.warm_up, Tally())
            said = settling.ended()
            if said is not None:
                break
        self.drains.clear()
        self.service.creates.late = self.hapi_side.creates.late = 0
        self.warmed = said

    async def measure(self) -> None:
        """The rounds, a turn a side each, the first side alternating."""
        args = self.args
        for number in range(1, args.rounds + 1):
            for index in (0, 1) if number % 2 else (1, 0):
                await self.take_turn(index, args.seconds / args.rounds, self.tallies[index])
            service, hapi = self.tallies
            print(
                f"  round {number}/{args.rounds}: service {service.rate():.1f} req/s, "
                f"hapi {hapi.rate():.1f} req/s so far",
                flush=True,
            )

    async def take_turn(self, index: int, seconds: float, tally: Tally) -> None:
        """A turn of side ``index`` (0 the service, 1 HAPI), once the service is quiet.

        The service's turn has the webhooks registered, and ends when its backlogs drained;
        what the service's metrics counted meanwhile is kept for either side.
        """
        side: Side = self.hapi_side if index else self.service
        share = MIX["create"] / sum(MIX.values())
        rate = side.creates.peak or GUESSED_RATE * self.args.clients * share
        # Twice the fastest creating yet: more costs only time before the clock, fewer a body
        # made while it runs.
        side.creates.fill(math.ceil(rate * seconds * 2) + self.args.clients)
        await quiet(self.control)
        hooked = [] if index else await register(self.control, self.bearer, self.receivers)
        since = datetime.now(UTC) - timedelta(seconds=1)
        first, taken, wall = len(self.service.created), side.creates.taken, tally.wall
        counted = service_figures(await scrape(self.control))
        cpu = cpu_seconds(self.service_pid, self.hapi_watch)
        await turn(side, self.clients[index], self.targets, seconds, tally)
        ended = time.monotonic()
        for name, spent in cpu_seconds(self.service_pid, self.hapi_watch).items():
            tally.cpu[name] += spent - cpu[name]
        for name, value in service_figures(await scrape(self.control)).items():
            tally.service[name] += value - counted[name]
        rate = (side.creates.taken - taken) / (tally.wall - wall)
        side.creates.peak = max(side.creates.peak, rate)
        if not index:
            written = set(self.service.created[first:])
            written |= {c.booking.contract_id for c in self.clients[0]}
            found = await drain(
                self.control,
                self.hapi,
                self.receivers,
                since,
                written,
                tally.wall - wall,
                ended,
                self.args.drain_limit,
            )
            self.drains.append(found)
            await unregister(self.control, hooked)


async def store(
    service_url: str, made: Sequence[Contract], bearer: dict[tuple[str, str], str], clients: int
) -> None:
    """``POST /contracts`` of each, ``clients`` at a time."""
    left = list(made)

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=service_url, timeout=TIMEOUT) as http:
            while left:
                contract = left.pop()
                headers = service_headers(bearer[unit_of(contract)], "application/json")
                body = contract_json(contract)
                answer = await http.post("/contracts", content=body, headers=headers)
                if answer.status_code != 201:
                    raise SystemExit(
                        f"storing {contract.id} answered {answer.status_code}:\n{answer.text}"
                    )

    await asyncio.gather(*(worker() for _ in range(clients)))


@dataclass(frozen=True)
class Setup:
    """What the run is made of, before the service starts: its contracts and tokens."""

    run_id: str
    seed: list[Contract]
    """The stored contracts that reads and searches ask for."""
    bookings: list[Contract]
    """A contract per client and side, with one agreed time to book."""
    bearer: dict[tuple[str, str], str]
    platform: str


async def load(
    hapi_url: str,
    service_url: str,
    service_pid: int,
    args: argparse.Namespace,
    setup: Setup,
    receivers: dict[str, Receiver],
    slots: list[str],
) -> Run:
    """Store the contracts, check both sides' answers, warm up and measure."""
    language: Language = Settings().narrative_language
    bearer, clients = setup.bearer, args.clients
    async with AsyncExitStack() as stack:
        control = await stack.enter_async_context(
            httpx.AsyncClient(base_url=service_url, timeout=TIMEOUT)
        )
        hapi = HapiClient(hapi_url, Metrics(), timeout=TIMEOUT)
        stack.push_async_callback(hapi.aclose)
        print(
            f"setting up: {len(setup.seed) + len(setup.bookings)} contracts, {len(slots)} slots",
            flush=True,
        )
        await store(service_url, [*setup.seed, *setup.bookings], bearer, clients)

        def service_create(contract: Contract) -> Prepared:
            headers = service_headers(bearer[unit_of(contract)], "application/json")
            return Prepared(contract.id, contract_json(contract), headers)

        def hapi_create(contract: Contract) -> Prepared:
            body = compact_json(create_transaction(contract, language, CALLER))
            return Prepared(contract.id, body, {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})

        ours, theirs = setup.bookings[:clients], setup.bookings[clients:]
        service = ServiceSide(Creates(f"{setup.run_id}-s", service_create), setup.platform)
        hapi_side = HapiSide(
            Creates(f"{setup.run_id}-h", hapi_create), booking.HapiBooker(hapi, theirs)
        )
        sides_clients: list[list[Client]] = []
        for url, own, first in ((service_url, ours, 0), (hapi_url, theirs, 1)):
            made = []
            for n, contract in enumerate(own):
                http = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=url, timeout=TIMEOUT)
                )
                # Every other slot to each side, so both book at the same times of day.
                time_of_its_own = Booking(
                    contract.id, contract.agreed_times[0].key, slots[2 * n + first]
                )
                made.append(Client(f"{setup.run_id}-{n}", http, time_of_its_own, len(setup.seed)))
            sides_clients.append(made)
        targets = [target(c, bearer[unit_of(c)]) for c in setup.seed]
        run = Run(
            args,
            control,
            hapi,
            bearer,
            receivers,
            targets,
            service_pid,
            HapiWatch(hapi_url),
            service,
            hapi_side,
            (sides_clients[0], sides_clients[1]),
        )
        problems = await probe(service, sides_clients[0][0], targets[0])
        problems += await probe(hapi_side, sides_clients[1][0], targets[0])
        if problems:
            raise SystemExit("the answers before the clock are wrong:\n" + "\n".join(problems))
        print(
            f"measuring: {args.warm_up:g} s a side of warm-up (again while HAPI's JIT compiler "
            f"is busy), then {args.rounds} rounds of {args.seconds / args.rounds:g} s a side",
            flush=True,
        )
        await run.warm_up()
        print(run.warmed, flush=True)
        await run.measure()
        return run


def run(hapi_url: str, args: argparse.Namespace) -> bool:
    """Set up, start the service, measure and report; True when no request went wrong."""
    run_id = f"bench-load-{random.randrange(16**8):08x}"
    seed = generated(args.contracts, f"{run_id}-r")
    bookings = booking.contracts(2 * args.clients, f"{run_id}-b", times=1)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        bearer = tokens(workdir, [*seed, *bookings], CALLER)
        setup = Setup(run_id, seed, bookings, bearer, booking.platform_token(workdir))
        with ExitStack() as stack:
            # Receivers keep their connections open, as one behind any web server does: one
            # that closes each makes every delivery open a connection and look its host up.
            receivers = {
                value: stack.enter_context(running_receiver(SECRET, keep_alive=True))
                for _, value in bearer
            }
            # The receivers listen on loopback, over http.
            settings = {"WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"}
            url, process = stack.enter_context(service_process(hapi_url, workdir, settings))
            with httpx.Client(base_url=url, timeout=TIMEOUT) as control:
                slots = booking.publish(control, bearer[booking.UNIT], 2 * args.clients)
            measured = asyncio.run(load(hapi_url, url, process.pid, args, setup, receivers, slots))
        # Read once the service has stopped, before its directory goes.
        warnings = logged_warnings(workdir / "service.log")
    return report(measured, hapi_url, warnings)


def logged_warnings(path: Path) -> Counter[str]:
    """How often the service logged each warning or error (level, logger and message)."""
    found: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            found[f"not JSON: {line[:200]}"] += 1
            continue
        if isinstance(record, dict) and record.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            found[f"{record['level']} {record.get('logger')}: {record.get('message')}"] += 1
    return found


# The report.


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else math.nan


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(run: Run, hapi_url: str, warnings: Counter[str]) -> bool:
    """Print the figures beside the targets, and what the service warned of; True when no
    request went wrong."""
    args = run.args
    service, hapi = run.tallies
    mix = ", ".join(f"{kind} {weight}" for kind, weight in MIX.items())
    print(
        f"HAPI {hapi_url}, {args.clients} clients a side, mix {mix} (booking: book and cancel "
        f"in turn), {args.rounds} rounds of {args.seconds / args.rounds:g} s a side; "
        f"{run.warmed}"
    )
    side_header = f"{'count':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{'':12} {'service':<32} | {'hapi':<32} | service/hapi")
    print(f"{'kind':12} {side_header} | {side_header} | {'req/s':>6} {'p50':>5} {'p99':>5}")
    for kind in (*KINDS, None):
        cells, figures = [], []
        for tally in (service, hapi):
            seconds = tally.everything() if kind is None else tally.seconds[kind]
            figures.append((tally.rate(kind), median_ms(seconds), p99_ms(seconds)))
            cells.append(
                f"{len(seconds):>7} {tally.rate(kind):>7.1f} {median_ms(seconds):>8.1f} "
                f"{p99_ms(seconds):>8.1f}"
            )
        ratios = [_ratio(ours, theirs) for ours, theirs in zip(*figures, strict=True)]
        print(
            f"{kind or 'all':12} {cells[0]} | {cells[1]} | "
            f"{ratios[0]:>6.2f} {ratios[1]:>5.2f} {ratios[2]:>5.2f}"
        )
    throughput = _ratio(service.rate(), hapi.rate())
    p99 = _ratio(p99_ms(service.everything()), p99_ms(hapi.everything()))
    print(
        f"targets: throughput {throughput:.2f}x HAPI's (>= {THROUGHPUT_TARGET}: "
        f"{_verdict(throughput >= THROUGHPUT_TARGET)}), p99 {p99:.2f}x (<= {P99_TARGET}: "
        f"{_verdict(p99 <= P99_TARGET)})"
    )
    # The audit records a turn leaves waiting are HAPI's work of that turn, done after it.
    after = sum(math.inf if d.audit_seconds is None else d.audit_seconds for d in run.drains)
    sustained = _ratio(len(service.everything()), service.wall + after)
    kept_up = _ratio(sustained, hapi.rate())
    print(
        f"sustained, with the {after:.1f} s the audit backlogs took to reach HAPI after the "
        f"service's turns counted in: service {sustained:.1f} req/s, {kept_up:.2f}x HAPI's "
        f"(>= {THROUGHPUT_TARGET}: {_verdict(kept_up >= THROUGHPUT_TARGET)})"
    )
    asked = [sum(len(t.seconds[k]) + t.errors[k] for k in KINDS) for t in run.tallies]
    straight = sum(HAPI_CALLS[k] * (len(hapi.seconds[k]) + hapi.errors[k]) for k in KINDS)
    ours = service.service
    print(
        f"requests to HAPI: the service sent {_ratio(ours['waited'], asked[0]):.2f} a request "
        f"in its turns (the hapi side {_ratio(straight, asked[1]):.2f}: the rest is the "
        f"service's audit, change feed and webhook routing), and "
        f"{hapi.service['waited'] / hapi.wall:.1f} a second in HAPI's turns (its change feed "
        "reading HAPI's writes)"
    )
    each_ms = _ratio(ours["waited_seconds"], ours["waited"]) * 1000
    print(
        "mean ms a request in the service's turns: its clients waited "
        f"{_ratio(sum(service.everything()), len(service.everything())) * 1000:.0f}; its "
        f"middleware timed it at {_ratio(ours['served_seconds'], ours['served']) * 1000:.0f} "
        "(to the end of its work, which may outlast the answer); the service's requests to "
        f"HAPI, background ones too, took {each_ms:.0f} each (the hapi side's about "
        f"{_ratio(sum(hapi.everything()), straight) * 1000:.0f})"
    )
    busy = [{k: v / t.wall for k, v in t.cpu.items()} for t in run.tallies]
    print(
        "CPU, in cores busy on average, in the service's turns | in HAPI's: the service process "
        f"{busy[0]['service']:.2f} | {busy[1]['service']:.2f}, this one (clients, receivers) "
        f"{busy[0]['bench']:.2f} | {busy[1]['bench']:.2f}, HAPI {busy[0]['hapi']:.2f} | "
        f"{busy[1]['hapi']:.2f} (its JIT compiler {busy[0]['jit']:.2f} | {busy[1]['jit']:.2f}, "
        f"its garbage collector {busy[0]['gc']:.2f} | {busy[1]['gc']:.2f}), "
        f"the machine's {os.cpu_count()} cores (everyone's) {busy[0]['machine']:.2f} | "
        f"{busy[1]['machine']:.2f}"
    )
    each = [_ratio(t.cpu["hapi"], len(t.everything())) * 1000 for t in run.tallies]
    print(
        f"HAPI's CPU a request answered: {each[0]:.1f} ms in the service's turns (its audit "
        f"records and the service's other requests to HAPI included), {each[1]:.1f} ms in "
        "HAPI's own"
    )
    late = {side.name: side.creates.late for side in (run.service, run.hapi_side)}
    if any(late.values()):
        print(f"create bodies made while the clock ran, too few having been made before: {late}")
    _report_webhooks(run)
    print(f"service log: {warnings.total()} warnings and errors" + (":" if warnings else ""))
    for message, count in warnings.most_common(10):
        print(f"  {count:>5} x {message[:300]}")
    return _report_errors(run)


def _report_webhooks(run: Run) -> None:
    for number, found in enumerate(run.drains, start=1):
        audit = (
            "not within the limit"
            if found.audit_seconds is None
            else f"{found.audit_seconds:.1f} s"
        )
        hooks = (
            f"{found.lost} NEVER ARRIVED"
            if found.webhook_seconds is None
            else f"all received {found.webhook_seconds:.1f} s after"
        )
        made, arrived = found.events, found.events - found.unreceived
        print(
            f"service turn {number}, when its {found.loaded:.0f} s of load ended: audit backlog "
            f"{found.audit:g} (0 after {audit}); webhook deliveries pending "
            f"{found.deliveries:g}, {found.unreceived} of the turn's {made} events not received "
            f"yet ({hooks}): {arrived / found.loaded:.1f} a second arrived during the load, of "
            f"{made / found.loaded:.1f} made"
        )
    drained = [math.inf if d.webhook_seconds is None else d.webhook_seconds for d in run.drains]
    slowest = max(drained)
    lost = sum(d.lost for d in run.drains)
    written = set(run.service.created) | {c.booking.contract_id for c in run.clients[0]}
    ours = Counter(announced(run.receivers, written))
    strays = len(announced(run.receivers)) - ours.total()
    duplicates = sum(len(r.duplicates) for r in run.receivers.values())
    duplicates += sum(n - 1 for n in ours.values())
    bad = sum(len(r.bad_signatures) for r in run.receivers.values())
    print(
        f"webhooks: {sum(d.events for d in run.drains)} events due in the measured turns, {lost} "
        f"lost (target 0: {_verdict(lost == 0)}), slowest drain {slowest:.1f} s (target <= "
        f"{DRAIN_TARGET:g} s: {_verdict(slowest <= DRAIN_TARGET)}); over the whole run "
        f"{duplicates} duplicates, {bad} bad signatures, {strays} about other contracts"
    )


def _report_errors(run: Run) -> bool:
    wrong = sum(t.errors.total() for t in run.tallies)
    if not wrong:
        print("errors: none")
        return True
    print("\n" + "!" * 78)
    print(f"!!! THIS RUN HAD {wrong} WRONG ANSWERS: its figures are not to be trusted")
    sides: tuple[Side, Side] = (run.service, run.hapi_side)
    for side, tally in zip(sides, run.tallies, strict=True):
        if tally.errors:
            print(f"!!! {side.name}: {dict(tally.errors)}")
            for problem in tally.problems:
                print(f"!!!   {problem}")
    print("!" * 78)
    return False


def main() -> None:
    """Parse the options, run against a HAPI; exit 1 when a request went wrong."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="See the module docstring (bench/load.py) for what is measured.",
    )
    parser.add_argument("--clients", type=int, default=20, help="clients at once, per side")
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds a side")
    parser.add_argument("--rounds", type=int, default=2, help="turns a side")
    parser.add_argument("--warm-up", type=float, default=10, help="seconds a side not kept")
    parser.add_argument(
        "--settle-limit",
        type=float,
        default=900,
        help="seconds of warm-up turns at most, repeated while HAPI's JIT compiler is busy",
    )
    parser.add_argument(
        "--contracts", type=int, default=200, help="stored contracts the reads and searches ask for"
    )
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=120,
        help="seconds to wait for the backlogs after a service turn before counting the rest lost",
    )
    add_hapi_database_option(parser)
    parser.add_argument(
        "--split-cores",
        action="store_true",
        help="HAPI and its database on one core, the service and the clients on the others, "
        "in both sides' turns: as production runs them on separate machines",
    )
    args = parser.parse_args()
    if args.clients < 1 or args.rounds < 1 or args.contracts < 1:
        parser.error("--clients, --rounds and --contracts must be at least 1")
    if args.seconds <= 0 or args.warm_up <= 0 or args.drain_limit <= 0 or args.settle_limit < 0:
        parser.error(
            "--seconds, --warm-up and --drain-limit must be positive, --settle-limit not negative"
        )
    with ExitStack() as stack:
        hapi_url = stack.enter_context(hapi_base_url(args.hapi_database))
        if args.split_cores:
            print(stack.enter_context(split_cores(hapi_url)))
        fine = run(hapi_url, args)
    sys.exit(0 if fine else 1)


if __name__ == "__main__":
    main()
