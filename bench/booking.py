"""Booking under contention: clients booking and cancelling, through the service and at HAPI.

    .venv/bin/python -m bench.booking [--clients 20] [--operations 160] [--rounds 4]
                                      [--warm-up 20] [--slots 40] [--times 3] [--race-slots 5]

An operation is one booking cycle of one client: book one of its contract's proposed nurse
visits in a free slot, then cancel it. ``--clients`` clients run at once on each side, each
picking its slot at random among its side's slots that none of its clients holds (a slot is
left out once a booking of it held, and back once that is cancelled), so two clients now and
then pick the same slot: the loser gets 409 (slot taken) and picks again. Each 409 is counted,
not an error; the cycle goes on until its booking holds.
In the same run, against the same HAPI, each side with its own slots and contracts:

- service: ``POST /booking/contracts/{id}/times/{key}/book`` with ``{"slot": ...}``, then
  ``.../cancel`` with a reason, with a booking platform's token (role ``booking``). For each the
  service sends HAPI three requests: the contract's records (one ``CarePlan`` search with
  ``READ_PARAMS``), the Slot (one read), and one transaction: the Appointment PUT and the Slot PUT,
  each with ``ifMatch`` the version read, and a Provenance POST. A slot found taken at the read
  ends the booking there (409, two requests). Audit records go to HAPI in the background.
- hapi: the same three requests per operation, sent straight to HAPI by the service's own code
  (``BookingService`` on a ``HapiClient`` of HAPI's address), so the reads, checks and the
  transaction Bundle (``agreed_time_bundle``, the Slot entry, ``change_entry``) are the service's
  own. The only difference: the contract is not parsed from the search result, as this client
  wrote it and knows it; the search is still sent and its Appointment and version used.

Each request is timed by its client; a hapi operation's latency is that of its two or three
requests. The sides take turns in ``--rounds`` rounds, the first side alternating, and the
service's audit backlog is drained before every turn, so load changes and background writes hit
both alike. Throughput is cycles per second of the sides' turns; latencies are those of the
bookings that held, the cancels, and the refused (409) attempts. Of those, "at write" counts the
ones that found the Slot free at the read and lost at the transaction's ``ifMatch`` (told apart
by the message of ``SlotTakenError``, which the service passes on as the problem's detail).

Then, on each side, a race: every client books once, at the same moment, one of ``--race-slots``
free slots (client n the slot n modulo that), and keeps it: exactly ``--race-slots`` must hold.
Last, double bookings, from HAPI's own records: in the history of every Appointment of the run,
no two booked at the same time in one Slot; and now, for every slot of the run, at most one
booked Appointment (``Appointment?slot=...&status=booked``), each busy Slot with one, each free
Slot without. Exits 1 when a double booking or such an inconsistency was found.

The service runs as its own process on a temporary service DB with the local development issuer
(see ``bench.facade``). Slots are published through the service on a random far-off day, contracts
(the elderly-psychiatry example, one per client and side, each with ``--times`` proposed nurse
visits) created through it. Uses ``FHIR_BASE_URL`` when set, otherwise starts the local HAPI (in
memory) for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench.bulk import EXAMPLES, generated
from bench.support import (
    contract_json,
    hapi_base_url,
    median_ms,
    p99_ms,
    running_service,
    service_headers,
    settle,
    slices,
    tokens,
    unit_of,
)
from fhir_service.booking import BookingService, SlotTakenError, TimeTypeCatalogue
from fhir_service.contract import AgreedTime, Contract
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import READ_PARAMS
from fhir_service.mapping.provenance import Author
from fhir_service.metrics import Metrics
from fhir_service.security.access import Compartment
from fhir_service.security.dev_keys import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    local_issuer_key,
    mint_token,
)
from fhir_service.security.roles import claims_for
from fhir_service.settings import Settings
from fhir_service.store import (
    Change,
    ContractNotFoundError,
    ContractStore,
    StoredContract,
)

TIMEOUT = 60.0
UNIT = ("hsa-id", "SE2321000065-1254")
TIME_TYPE = "nurse-visit"
SLOT_MINUTES = 30
SUBJECT = "bench-booking"
CLIENT_ID = "bench-booking"
MOST_TRIES = 100
"""Booking attempts of one cycle before the run stops: far more than contention explains."""


@dataclass
class Tally:
    """What one side's clients did, and how long each request took."""

    book: list[float] = field(default_factory=list)
    cancel: list[float] = field(default_factory=list)
    taken: list[float] = field(default_factory=list)
    """Booking attempts answered 409: the slot was taken."""
    lost_at_write: int = 0
    """Of those, the ones that found the slot free but lost at the transaction's ``ifMatch``."""
    cycles: int = 0
    seconds: float = 0.0

    def add(self, other: Tally) -> None:
        """Count ``other`` in."""
        self.book += other.book
        self.cancel += other.cancel
        self.taken += other.taken
        self.lost_at_write += other.lost_at_write
        self.cycles += other.cycles
        self.seconds += other.seconds

    @property
    def rate(self) -> float:
        """Cycles per second."""
        return self.cycles / self.seconds if self.seconds else 0.0


BOOKED, TAKEN, LOST = "booked", "taken", "lost"
"""How a booking attempt ended: booked; 409 as the Slot read was not free; 409 as the
transaction found the Slot (or the Appointment) changed since it was read."""


def _refusal(message: str) -> str:
    # SlotTakenError says which; the service passes its message on as the problem's detail.
    return LOST if "changed meanwhile" in message else TAKEN


class Booker(Protocol):
    """One side's way to book and cancel an agreed time."""

    name: str

    async def book(self, contract_id: str, key: str, slot: str) -> str:
        """Book: BOOKED, or TAKEN or LOST (409)."""
        ...

    async def cancel(self, contract_id: str, key: str) -> None:
        """Cancel the booked time."""
        ...


class ServiceBooker:
    """Books through the service's booking facade, as a booking platform."""

    name = "service"

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.headers = service_headers(token, "application/json")

    async def book(self, contract_id: str, key: str, slot: str) -> str:
        """``POST .../book``: 200 booked, 409 "Slot taken", anything else stops the run (also
        a 409 for another conflict, such as the time being booked already)."""
        path = f"/booking/contracts/{contract_id}/times/{key}/book"
        response = await self.http.post(path, json={"slot": slot}, headers=self.headers)
        if response.status_code == 409 and response.json().get("title") == "Slot taken":
            return _refusal(str(response.json().get("detail", "")))
        _expect_200(response)
        return BOOKED

    async def cancel(self, contract_id: str, key: str) -> None:
        """``POST .../cancel``: 200, or the run stops."""
        path = f"/booking/contracts/{contract_id}/times/{key}/cancel"
        body = {"reason": "Bench: cancelled again"}
        _expect_200(await self.http.post(path, json=body, headers=self.headers))


def _expect_200(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise SystemExit(
            f"service: {response.request.method} {response.request.url} answered "
            f"{response.status_code}:\n{response.text[:4000]}"
        )


class KnownContracts(ContractStore):
    """The service's one search for a contract's records, straight to HAPI; the contract itself
    is the one this client last wrote, not parsed from the result."""

    def __init__(self, hapi: HapiClient, contracts: dict[str, Contract]) -> None:
        super().__init__(hapi)
        self.known = contracts

    async def records(self, contract_id: str, by: Change | None = None) -> StoredContract:
        """The search ``ContractStore.records`` sends, with the contract as known here."""
        params = [("identifier", f"{urls.ID_CONTRACT}|{contract_id}"), *READ_PARAMS]
        result = await self.hapi.search("CarePlan", params)
        careplans = result.matches()
        if not careplans:
            raise ContractNotFoundError(contract_id)
        return StoredContract(self.known[contract_id], result.as_bundle(), str(careplans[0]["id"]))


class HapiBooker:
    """Sends HAPI what the service sends it to book and cancel, with the service's code."""

    name = "hapi"

    def __init__(self, hapi: HapiClient, contracts: Sequence[Contract]) -> None:
        self.known = {c.id: c for c in contracts}
        self.booking = BookingService(
            hapi, KnownContracts(hapi, self.known), TimeTypeCatalogue(hapi)
        )
        # Who the service names in the Provenance for a booking platform's token.
        author = Author((LOCAL_ISSUER, SUBJECT), CLIENT_ID)
        self.by = Change(author, Compartment())

    async def book(self, contract_id: str, key: str, slot: str) -> str:
        """As the service books: search, Slot read, one transaction (or 409 after the read)."""
        try:
            booked = await self.booking.book(contract_id, key, slot, self.by, patient=True)
        except SlotTakenError as exc:
            return _refusal(str(exc))
        self.known[contract_id] = booked.contract
        return BOOKED

    async def cancel(self, contract_id: str, key: str) -> None:
        """As the service cancels: search, Slot read, one transaction."""
        reason = "Bench: cancelled again"
        cancelled = await self.booking.cancel(contract_id, key, reason, self.by, patient=True)
        self.known[contract_id] = cancelled.contract


class Pool:
    """The slots of one side, and which of them its clients believe free."""

    def __init__(self, slots: Sequence[str]) -> None:
        self.slots = list(slots)
        self.free = set(slots)

    def pick(self) -> str:
        """A slot believed free, at random: other clients may be picking it right now."""
        return random.choice(tuple(self.free))


@dataclass
class Client:
    """One client: its contract, and the agreed times it books in turn."""

    contract: Contract
    keys: Iterator[str]


def _clients(contracts: Sequence[Contract]) -> list[Client]:
    return [Client(c, itertools.cycle([t.key for t in c.agreed_times])) for c in contracts]


async def cycle(booker: Booker, client: Client, pool: Pool, tally: Tally) -> None:
    """Book one of the client's times in a free slot (again after each 409), then cancel it."""
    key = next(client.keys)
    contract_id = client.contract.id
    for _ in range(MOST_TRIES):
        slot = pool.pick()
        started = time.perf_counter()
        booked = await booker.book(contract_id, key, slot)
        seconds = time.perf_counter() - started
        if booked == BOOKED:
            tally.book.append(seconds)
            break
        tally.taken.append(seconds)
        tally.lost_at_write += booked == LOST
    else:
        raise SystemExit(f"{booker.name}: {MOST_TRIES} slots in a row were taken")
    pool.free.discard(slot)
    started = time.perf_counter()
    await booker.cancel(contract_id, key)
    tally.cancel.append(time.perf_counter() - started)
    pool.free.add(slot)
    tally.cycles += 1


async def turn(booker: Booker, clients: Sequence[Client], pool: Pool, cycles: int) -> Tally:
    """``cycles`` booking cycles, the clients running at once, each taking the next while any
    is left."""
    tally = Tally()
    left = cycles

    async def run(client: Client) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await cycle(booker, client, pool, tally)

    started = time.perf_counter()
    await asyncio.gather(*(run(c) for c in clients))
    tally.seconds = time.perf_counter() - started
    return tally


async def race(booker: Booker, clients: Sequence[Client], slots: Sequence[str]) -> Counter[str]:
    """Every client books once, all at once, slot n modulo ``len(slots)``; nothing cancelled."""
    outcomes = await asyncio.gather(
        *(
            booker.book(client.contract.id, next(client.keys), slots[n % len(slots)])
            for n, client in enumerate(clients)
        )
    )
    return Counter(outcomes)


# Setting up: slots and contracts, through the service.


def publish(service: httpx.Client, token: str, count: int) -> list[str]:
    """Publish ``count`` nurse visits on a random far-off day, all new; their Slot ids in
    order of time."""
    path = f"/booking/care-units/{'|'.join(UNIT)}/time-types/{TIME_TYPE}/slots"
    headers = service_headers(token, "application/json")
    for _ in range(10):
        day = date(2031, 1, 1) + timedelta(days=random.randrange(9 * 365))
        first = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
        starts = [first + timedelta(minutes=SLOT_MINUTES * n) for n in range(count)]
        times = [
            {"start": _iso(s), "end": _iso(s + timedelta(minutes=SLOT_MINUTES))} for s in starts
        ]
        response = service.post(path, json={"times": times}, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"publishing slots answered {response.status_code}:\n{response.text}")
        if response.json()["existing"] == 0:
            return _slot_ids(service, headers, starts)
    raise SystemExit("ten random days in 2031-2039 all had slots of earlier runs")


def _slot_ids(service: httpx.Client, headers: dict[str, str], starts: list[datetime]) -> list[str]:
    ids: dict[datetime, str] = {}
    since = starts[0]
    end = starts[-1] + timedelta(minutes=1)
    while since < end:
        params = {
            "careUnit": "|".join(UNIT),
            "timeType": TIME_TYPE,
            "from": _iso(since),
            "to": _iso(end),
            "count": "100",
        }
        response = service.get("/booking/slots", params=params, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"finding slots answered {response.status_code}:\n{response.text}")
        found = response.json()["slots"]
        if not found:
            break
        for slot in found:
            ids[datetime.fromisoformat(slot["start"])] = slot["id"]
        since = datetime.fromisoformat(found[-1]["start"]) + timedelta(minutes=1)
    missing = [s for s in starts if s not in ids]
    if missing:
        raise SystemExit(f"{len(missing)} published slots are not found free, first {missing[0]}")
    return [ids[s] for s in starts]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def contracts(count: int, run: str, times: int) -> list[Contract]:
    """``count`` elderly-psychiatry contracts, each of its own patient, with ``times``
    proposed nurse visits (and no other agreed times)."""
    examples = len(list(EXAMPLES.glob("*.json")))
    theirs = [c for c in generated(examples * count, run) if unit_of(c) == UNIT][:count]
    made = []
    for contract in theirs:
        clinician = contract.responsible_clinician
        assert clinician is not None, "the elderly-psychiatry example names its clinician"
        unit = clinician.organization
        visits = tuple(
            AgreedTime(
                key=f"nurse-{n}",
                description="Blodprov och samtal hos sjuksköterskan",
                organization=unit,
                time_type=TIME_TYPE,
            )
            for n in range(times)
        )
        made.append(contract.model_copy(update={"agreed_times": visits}))
    return made


def create(service: httpx.Client, token: str, made: Sequence[Contract]) -> None:
    """``POST /contracts`` of each."""
    headers = service_headers(token, "application/json")
    for contract in made:
        response = service.post("/contracts", content=contract_json(contract), headers=headers)
        if response.status_code != 201:
            raise SystemExit(
                f"creating {contract.id} answered {response.status_code}:\n{response.text}"
            )


def platform_token(workdir: Path) -> str:
    """A booking platform's token (role ``booking``, no care unit) of the local issuer."""
    key, _ = local_issuer_key(Settings(data_dir=workdir).local_issuer_dir)
    claims = claims_for(
        "booking",
        issuer=LOCAL_ISSUER,
        audience=LOCAL_AUDIENCE,
        subject=SUBJECT,
        client_id=CLIENT_ID,
        lifetime_seconds=24 * 3600,
    )
    return mint_token(key, claims)


# Checking: double bookings and consistency, from HAPI's records.


@dataclass
class Findings:
    """What the records of one side's slots and Appointments show."""

    appointments: int = 0
    versions: int = 0
    overlaps: list[str] = field(default_factory=list)
    """Slots in which two Appointments were booked at the same time, at some moment."""
    doubly_booked: list[str] = field(default_factory=list)
    """Slots with more than one booked Appointment now."""
    busy_unbooked: list[str] = field(default_factory=list)
    free_booked: list[str] = field(default_factory=list)

    @property
    def double_bookings(self) -> int:
        """Slots ever booked twice at once (now included)."""
        return len(set(self.overlaps) | set(self.doubly_booked))

    @property
    def inconsistent(self) -> int:
        """Slots whose status disagrees with their booked Appointments."""
        return len(self.busy_unbooked) + len(self.free_booked)


def _chunks(values: Sequence[str], size: int = 50) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def check(hapi: HapiClient, slots: Sequence[str], made: Sequence[Contract]) -> Findings:
    """Double bookings over the run (Appointment histories) and now (searches), and whether
    each Slot's status agrees with its booked Appointments."""
    findings = Findings()
    booked_now: Counter[str] = Counter()
    status: dict[str, str] = {}
    for part in _chunks(slots):
        found = await hapi.search(
            "Appointment",
            [
                ("slot", ",".join(f"Slot/{s}" for s in part)),
                ("status", "booked"),
                ("_count", "200"),
            ],
            max_pages=100,
        )
        for appointment in found.matches():
            for reference in appointment.get("slot", []):
                booked_now[reference["reference"].removeprefix("Slot/")] += 1
        read = await hapi.search(
            "Slot", [("_id", ",".join(part)), ("_count", "200")], max_pages=100
        )
        status |= {str(s["id"]): str(s["status"]) for s in read.matches()}
    for slot in slots:
        if booked_now[slot] > 1:
            findings.doubly_booked.append(slot)
        if status.get(slot) == "busy" and booked_now[slot] == 0:
            findings.busy_unbooked.append(slot)
        if status.get(slot) == "free" and booked_now[slot] > 0:
            findings.free_booked.append(slot)
    keys = [f"{c.id}/{t.key}" for c in made for t in c.agreed_times]
    ids: list[str] = []
    for part in _chunks(keys):
        found = await hapi.search(
            "Appointment",
            [
                ("identifier", ",".join(f"{urls.ID_AGREED_TIME}|{k}" for k in part)),
                ("_count", "200"),
            ],
            max_pages=100,
        )
        ids += [str(r["id"]) for r in found.matches()]
    findings.appointments = len(ids)
    periods: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for appointment_id in ids:
        history = await hapi.history("Appointment", appointment_id, params=[("_count", "500")])
        versions = sorted(history.resources, key=lambda r: int(r["meta"]["versionId"]))
        findings.versions += len(versions)
        ends = [_updated(v) for v in versions[1:]] + [datetime.max.replace(tzinfo=UTC)]
        for version, end in zip(versions, ends, strict=True):
            if version.get("status") == "booked":
                for reference in version.get("slot", []):
                    slot = reference["reference"].removeprefix("Slot/")
                    periods[slot].append((_updated(version), end, appointment_id))
    findings.overlaps = overlapping(periods)
    return findings


def overlapping(periods: dict[str, list[tuple[datetime, datetime, str]]]) -> list[str]:
    """The slots in which two Appointments were booked at once: ``periods`` holds, per slot,
    each stretch (from, until, Appointment id) an Appointment was booked in it."""
    return [
        slot
        for slot, booked in periods.items()
        if any(
            a[2] != b[2] and a[0] < b[1] and b[0] < a[1]
            for a, b in itertools.combinations(booked, 2)
        )
    ]


def _updated(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"])


# The run.


@dataclass
class Side:
    """One side: how it books, its clients and slots, and what it did."""

    booker: Booker
    clients: list[Client]
    pool: Pool
    race_slots: list[str]
    contracts: list[Contract]
    tally: Tally = field(default_factory=Tally)


async def measure(
    sides: tuple[Side, Side], service_http: httpx.Client, args: argparse.Namespace
) -> None:
    """Warm up, then the rounds: both sides in turns, the service's audit drained before each."""
    for side in sides:
        settle(service_http)
        await turn(side.booker, side.clients, side.pool, args.warm_up)
    for number, part in enumerate(slices(args.operations, args.rounds), start=1):
        order = sides if number % 2 else sides[::-1]
        for side in order:
            settle(service_http)
            cycles = part.stop - part.start
            side.tally.add(await turn(side.booker, side.clients, side.pool, cycles))
        service, hapi = sides
        print(
            f"  round {number}/{args.rounds}: service {service.tally.rate:.1f} cycles/s, "
            f"hapi {hapi.tally.rate:.1f} cycles/s so far",
            flush=True,
        )


def report(sides: tuple[Side, Side], races: list[Counter[str]], checks: list[Findings]) -> bool:
    """Print the numbers; True when no double booking or inconsistency was found."""
    print(
        f"{'':8} {'cycles/s':>9} | {'book median':>11} {'p99':>7} | "
        f"{'cancel median':>13} {'p99':>7} | {'409s':>5} {'at write':>8} {'409 median':>10}"
    )
    for side in sides:
        t = side.tally
        book = f"{median_ms(t.book):>8.1f} ms {p99_ms(t.book):>4.0f} ms"
        cancel = f"{median_ms(t.cancel):>10.1f} ms {p99_ms(t.cancel):>4.0f} ms"
        taken = f"{len(t.taken):>5} {t.lost_at_write:>8} {median_ms(t.taken):>7.1f} ms"
        print(f"{side.booker.name:<8} {t.rate:>9.1f} | {book} | {cancel} | {taken}")
    service, hapi = (s.tally for s in sides)
    print(
        f"ratio service/hapi: throughput {service.rate / hapi.rate:.2f}, "
        f"book median {median_ms(service.book) / median_ms(hapi.book):.2f} "
        f"p99 {p99_ms(service.book) / p99_ms(hapi.book):.2f}, "
        f"cancel median {median_ms(service.cancel) / median_ms(hapi.cancel):.2f} "
        f"p99 {p99_ms(service.cancel) / p99_ms(hapi.cancel):.2f}"
    )
    fine = True
    for side, outcome, found in zip(sides, races, checks, strict=True):
        name = side.booker.name
        slots = len(side.pool.slots) + len(side.race_slots)
        print(
            f"{name}: race of {len(side.clients)} clients on {len(side.race_slots)} slots: "
            f"{outcome[BOOKED]} booked, {outcome[TAKEN] + outcome[LOST]} taken (409, "
            f"{outcome[LOST]} of them at the write); "
            f"double bookings: {found.double_bookings} "
            f"({len(found.overlaps)} in {found.versions} versions of {found.appointments} "
            f"Appointments, {len(found.doubly_booked)} of {slots} slots now); "
            f"busy without booking: {len(found.busy_unbooked)}, "
            f"free with booking: {len(found.free_booked)}"
        )
        for label, which in (
            ("booked twice at once", found.overlaps),
            ("booked twice now", found.doubly_booked),
            ("busy without a booked Appointment", found.busy_unbooked),
            ("free with a booked Appointment", found.free_booked),
        ):
            if which:
                print(f"  {name}: {label}: " + ", ".join(f"Slot/{s}" for s in sorted(set(which))))
        if outcome[BOOKED] != len(side.race_slots):
            print(f"  {name}: the race should have booked exactly {len(side.race_slots)}")
        fine = fine and not found.double_bookings and not found.inconsistent
    total = sum(f.double_bookings for f in checks)
    print(f"double bookings: {total}" + ("" if total == 0 else "  <-- must be 0"))
    return fine


async def run(hapi_url: str, args: argparse.Namespace) -> bool:
    """Set up, start the service, measure, race, check; True when all is consistent."""
    run_id = f"bench-booking-{random.randrange(16**8):08x}"
    made = contracts(2 * args.clients, run_id, args.times)
    ours, theirs = made[: args.clients], made[args.clients :]
    per_side = args.slots + args.race_slots
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    hapi = HapiClient(hapi_url, Metrics(), timeout=TIMEOUT)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        clinic = tokens(workdir, made, SUBJECT)[UNIT]
        platform = platform_token(workdir)
        with (
            running_service(hapi_url, workdir) as service_url,
            httpx.Client(base_url=service_url, timeout=TIMEOUT) as service_http,
        ):
            print(
                f"setting up: {2 * per_side} slots, {len(made)} contracts "
                f"with {args.times} nurse visits each",
                flush=True,
            )
            slots = publish(service_http, clinic, 2 * per_side)
            create(service_http, clinic, made)
            async with httpx.AsyncClient(
                base_url=service_url, timeout=TIMEOUT, limits=limits
            ) as service_async:
                # Every other slot to each side, so both book at the same times of day.
                sides = (
                    Side(
                        ServiceBooker(service_async, platform),
                        _clients(ours),
                        Pool(slots[0 : 2 * args.slots : 2]),
                        slots[2 * args.slots :: 2],
                        ours,
                    ),
                    Side(
                        HapiBooker(hapi, theirs),
                        _clients(theirs),
                        Pool(slots[1 : 2 * args.slots : 2]),
                        slots[2 * args.slots + 1 :: 2],
                        theirs,
                    ),
                )
                await measure(sides, service_http, args)
                races = []
                for side in sides:
                    settle(service_http)
                    races.append(await race(side.booker, side.clients, side.race_slots))
            settle(service_http)
    checks = [await check(hapi, s.pool.slots + s.race_slots, s.contracts) for s in sides]
    await hapi.aclose()
    print(
        f"HAPI {hapi_url}, {args.clients} clients a side, {args.operations} cycles a side "
        f"(book, then cancel; after {args.warm_up} warm-up), {args.rounds} rounds, "
        f"service and HAPI taking turns, {args.slots} slots a side"
    )
    return report(sides, races, checks)


def main() -> None:
    """Parse the options, run against a HAPI; exit 1 on a double booking."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="See the module docstring (bench/booking.py) for what is measured.",
    )
    parser.add_argument("--clients", type=int, default=20, help="clients at once, per side")
    parser.add_argument(
        "--operations", type=int, default=160, help="booking cycles (book, cancel) per side"
    )
    parser.add_argument("--rounds", type=int, default=4, help="turns per side")
    parser.add_argument("--warm-up", type=int, default=20, help="cycles per side not kept")
    parser.add_argument("--slots", type=int, default=40, help="slots per side to book in")
    parser.add_argument("--times", type=int, default=3, help="nurse visits per contract")
    parser.add_argument(
        "--race-slots", type=int, default=5, help="slots the final race of all clients is on"
    )
    args = parser.parse_args()
    if args.clients < 1 or args.times < 1 or args.race_slots < 1:
        parser.error("--clients, --times and --race-slots must be at least 1")
    if args.slots <= args.clients:
        parser.error("--slots must exceed --clients, or a client may find none free")
    if args.operations < 2 * args.rounds:
        parser.error("every round needs two cycles a side: raise --operations")
    if args.warm_up < 0:
        parser.error("--warm-up cannot be negative")
    with hapi_base_url() as hapi_url:
        fine = asyncio.run(run(hapi_url, args))
    sys.exit(0 if fine else 1)


if __name__ == "__main__":
    main()
