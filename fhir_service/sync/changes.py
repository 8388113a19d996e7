"""Changes in HAPI become webhook events, each once: the ``_history`` feed and its cursor.

HAPI's rest-hook Subscriptions only wake the feed up (they carry no payload, so nothing clinical
travels twice); what changed is always read from HAPI's ``_history`` since the cursor kept in the
service DB. The feed also runs at start and on a timer, so changes made while the service was
down, or whose rest-hook HAPI dropped, still go out.

Each watched type has a cursor of its own: the newest ``lastUpdated`` its own read saw. A cursor
shared by the types read one after the other would lose changes: the types later in a round are
read later (after the lookups the earlier ones needed), so their newest change can be far past
what the first type's read could see, and the next round would start after changes of the first
type that committed meanwhile.

HAPI stamps a transaction's ``lastUpdated`` when it starts, not when it commits: a transaction
still running at a read commits later with an older stamp than the cursor may have reached. An
ordinary read (a wake) reads only from its cursor on, so each change is read about once; a
*sweep* reads again from an ``overlap`` before where the previous sweep began, which finds every
change committed late. A sweep runs when the feed starts, then once an ``overlap`` has passed
since the last, and on the read after a burst of changes ended (after a read that found nothing
new, following reads that did; the feed is read again within moments while that is pending:
:attr:`ChangeFeed.settling`), so that changes of the burst that committed late do not wait
for its turn (:meth:`ChangeFeed._read` says why nothing falls between sweeps). A sweep reads
from the cursor as a wake does, and of the window before it lists only ids and versions, reading
by version the few changes it finds new there: each change comes from HAPI in full once (twice
when it was the newest a read saw: a read from the cursor reads its millisecond again). The
``seen_changes`` table keeps a change read by a wake and a sweep, or by several instances, from
making an event twice.

An event names the resource version that changed and its contract, not the patient: receivers read
what they need with their own access rights. Who a change concerns (the contract's patient and care
units) is read from the contract's records as stored, once a round per contract; a change this
instance wrote itself is routed by the contract as that write left it, kept since the write
(``store.own_writes``), with no read. The two differ only for a change some other write overtook,
which then goes to those the contract concerned when it was made. A change that leaves its contract
unreadable (a record edited in HAPI so that the mapping cannot read it back) is announced all the
same, to the webhooks its stored records route it to, marked ``"readable": false``, and logged: the
contract needs mending, and the units that hold it are the ones to hear of it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_service.fhir import GoneError, HapiClient, NotFoundError, SearchResult
from fhir_service.mapping.from_fhir import UnreadableContractError, contract_from_bundle
from fhir_service.mapping.ownership import contract_of
from fhir_service.metrics import Metrics
from fhir_service.servicedb.tables import Delivery, SeenChange, SyncState
from fhir_service.store import ContractNotFoundError, ContractStore
from fhir_service.store.own_writes import Concerned, concerned
from fhir_service.sync.webhook_deliveries import delivery_rows
from fhir_service.sync.webhook_registrations import Registration, WebhookRegistry

__all__ = ["WATCHED_TYPES", "Change", "ChangeFeed", "Routing", "changes_in"]

_log = logging.getLogger(__name__)

WATCHED_TYPES = ("CarePlan", "CareTeam", "Appointment")

_CURSOR = "history_cursor"
"""The name of the cursor the types shared before each had its own: where those start."""
_SWEPT = "history_swept"
"""The prefix of each type's mark: its cursor as it stood when its last complete sweep began."""
# Well below the bound parameters SQLite takes in one statement.
_IDS_PER_QUERY = 500
_LOOKUPS = 8
"""How many reads of HAPI a round of the feed makes at once to route its changes."""

Resource = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One version of a watched resource, as ``_history`` lists it."""

    resource_type: str
    resource_id: str
    version: str
    resource: Resource | None
    last_updated: datetime | None

    @property
    def key(self) -> tuple[str, str, str]:
        """Type, id and version: what ``seen_changes`` keeps of it."""
        return self.resource_type, self.resource_id, self.version

    @property
    def deleted(self) -> bool:
        """A deletion: ``_history`` lists it without the resource."""
        return self.resource is None

    @property
    def kind(self) -> str:
        """``created``, ``updated`` or ``deleted``."""
        if self.deleted:
            return "deleted"
        return "created" if self.version == "1" else "updated"


@dataclass(frozen=True)
class Routing:
    """Who a change concerns: its contract, its patient's identifiers, the care units taking part
    and the one responsible for the contract (None when that could not be found out).

    Identifiers are ``system|value`` tokens, the form webhook filters use.
    """

    contract_id: str | None
    patients: frozenset[str]
    care_units: frozenset[str]
    responsible_unit: str | None = None
    readable: bool = True
    """False when the contract's stored records no longer read as a contract."""

    def wanted_by(self, webhook: Registration) -> bool:
        """Whether ``webhook`` is told of this change: only records of contracts make events."""
        return self.contract_id is not None and webhook.wants(
            self.patients, self.care_units, self.responsible_unit
        )


Routes = dict[str, asyncio.Future[Routing | None]]
"""A round's routings by contract id, each looked up once (None: the contract has no records)."""


def changes_in(entries: list[Resource]) -> list[Change]:
    """The changes of a ``_history`` Bundle's entries, oldest first."""
    changes: list[Change] = []
    for entry in entries:
        request = entry.get("request") or {}
        resource = entry.get("resource")
        path = str(request.get("url", ""))
        parts = path.split("/")
        if len(parts) == 4 and parts[2] == "_history":
            resource_type, resource_id, version = parts[0], parts[1], parts[3]
        elif isinstance(resource, dict):
            resource_type = str(resource.get("resourceType"))
            resource_id = str(resource.get("id"))
            version = str(resource.get("meta", {}).get("versionId"))
        else:
            continue
        if request.get("method") == "DELETE":
            resource = None
        changes.append(
            Change(
                resource_type,
                resource_id,
                version,
                resource if isinstance(resource, dict) else None,
                _instant((resource or {}).get("meta", {}).get("lastUpdated")),
            )
        )
    # HAPI lists history newest first; events go out in the order things happened.
    changes.sort(key=_made_at)
    return changes


def _made_at(change: Change) -> datetime:
    """When HAPI stamped the change; a deletion, which ``_history`` lists without it, last."""
    return change.last_updated or datetime.max.replace(tzinfo=UTC)


class ChangeFeed:
    """Reads HAPI's history since the cursor and turns each new change into deliveries."""

    def __init__(
        self,
        hapi: HapiClient,
        engine: Engine,
        store: ContractStore,
        registry: WebhookRegistry,
        *,
        overlap: timedelta = timedelta(seconds=30),
        page_size: int = 200,
        max_pages: int = 1000,
        enqueued: asyncio.Event | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.hapi = hapi
        self.engine = engine
        self.store = store
        self.registry = registry
        self.overlap = overlap
        """The longest a change may take to commit after HAPI stamped it; also how long a sweep
        waits for its turn while changes keep coming."""
        self.page_size = page_size
        self.max_pages = max_pages
        self.enqueued = enqueued
        """Set whenever deliveries were enqueued, so that the delivery worker starts at once."""
        self.metrics = metrics
        """Where the lag of each event made is observed, when given."""
        # The loop's clock when each type was last swept by this instance.
        self._swept: dict[str, float] = {}
        # Types whose reads found changes since their last sweep, and of those, the ones whose
        # last read found none: a burst of changes has ended.
        self._busy: set[str] = set()
        self._settled: set[str] = set()
        # A round routes its changes side by side, but HAPI serves the writers too.
        self._lookups = asyncio.Semaphore(_LOOKUPS)

    @property
    def settling(self) -> bool:
        """Whether changes were read lately and the sweep after them has not run: the feed is
        to be read again within moments, not at its interval, so that a change of a burst that
        committed late goes out soon after the burst ends."""
        return bool(self._busy or self._settled)

    async def catch_up(self) -> int:
        """Turn every change since the cursors into events; returns how many were new."""
        webhooks = await asyncio.to_thread(self.registry.list)
        # A contract written once changes many resources; its routing is looked up once a round.
        routes: Routes = {}
        # The types are read side by side, each from its own cursor; one that fails holds up
        # none of the others.
        reads = await asyncio.gather(
            *(self._read(t, webhooks, routes) for t in WATCHED_TYPES), return_exceptions=True
        )
        done = [read for read in reads if isinstance(read, _Read)]
        # One commit for the round; events go out type by type (a contract's CarePlan before
        # its CareTeam and Appointments), each type's in the order its changes were made.
        events = [event for read in done for event in read.events]
        made = await asyncio.to_thread(self._commit, events) if events else set()
        if self.enqueued is not None and any(e.webhook_ids for e in events if e.event_id in made):
            self.enqueued.set()
        if self.metrics is not None:
            now = datetime.now(UTC)
            for event in events:
                stamped = event.change.last_updated
                if event.event_id in made and stamped is not None:
                    lag = max(0.0, (now - stamped).total_seconds())
                    self.metrics.change_feed_lag.observe(lag)
        for read in done:
            await self._moved(read, made)
        for failed in reads:
            if isinstance(failed, BaseException):
                raise failed
        return len(made)

    async def _read(
        self, resource_type: str, webhooks: list[Registration], routes: Routes
    ) -> _Read | None:
        """Read one type's changes from its cursor on, or, when a sweep is due, from an
        ``overlap`` before its mark; the events of those not seen yet. None at the first start.

        Why no change falls between the wakes and the sweeps: a change stamped ``t`` shows once
        its transaction commits, at a moment ``c`` at most ``overlap`` later, so
        ``t >= c - overlap``. A cursor is the stamp of a change HAPI already showed (or HAPI's
        clock at the first start), never later than the moment it is read. A sweep that begins
        at ``b`` keeps HAPI's clock as its read of the window began (the Bundle's
        ``meta.lastUpdated``: HAPI stamps a history search before it queries; the cursor it read
        at ``b`` when HAPI gives none) and, only once it has recorded everything, leaves it as the
        mark for the next sweep. When it ends, every change committed before ``b`` has been read:
        one committed before the mark's own sweep read its window was read by that sweep (the
        same argument, back to the first start); one committed after, has
        ``t >= c - overlap >= mark - overlap``: it lies in this sweep's window, and committed
        before this sweep read it. Each change is thus read by the first sweep beginning after
        its commit, at most an ``overlap`` (and a round) later. Wakes in between read from the
        cursor on and make most events at once; what they miss (a change committed after the
        cursor passed its stamp) waits for that sweep, and a change both read makes one event,
        by the seen table. A mark from HAPI's clock rather than the cursor lets the windows move
        on while nothing changes, instead of listing the last overlap before the newest change
        at every sweep.
        """
        cursor, mark = await asyncio.to_thread(self._read_cursor, resource_type)
        if cursor is None:
            # First start: begin at HAPI's "now". Nothing registered before can want older news;
            # what commits meanwhile with an older stamp, the next read (a sweep) finds.
            start = await self.hapi.history(resource_type, params=[("_count", "1")])
            now = _server_now(start.meta)
            await asyncio.to_thread(self._write_cursor, resource_type, now, now)
            return None
        clock = asyncio.get_running_loop().time()
        last_sweep = self._swept.get(resource_type)
        # Besides its turn, a sweep follows the end of a burst, so that a change of the burst
        # that committed late goes out now, not up to an overlap later.
        sweep = (
            last_sweep is None
            or clock - last_sweep >= self.overlap.total_seconds()
            or resource_type in self._settled
        )
        # HAPI's _since is inclusive: a read from the cursor reads its own millisecond again,
        # for a change stamped in the same millisecond as the newest seen but committed after.
        # A feed that kept no mark yet swept from its cursor.
        window = (mark or cursor) - self.overlap if sweep else cursor
        listing: SearchResult | None = None
        if not webhooks:
            # Nobody to tell: the changes are only marked seen, for which ids and versions do.
            result = await self._history(resource_type, window, listing=True)
        elif sweep:
            # A sweep reads from the cursor as a wake does, and lists, by id and version only,
            # the window before it: mostly changes seen before. What is new there (committed
            # late) is read by version.
            result, listing = await asyncio.gather(
                self._history(resource_type, cursor, listing=False),
                self._history(resource_type, window, listing=True),
            )
        else:
            result = await self._history(resource_type, cursor, listing=False)
        changes = changes_in(result.entries)
        listed: list[Change] = []
        if listing is not None:
            read_already = {c.key for c in changes}
            listed = [c for c in changes_in(listing.entries) if c.key not in read_already]
        # Most of a sweep's window was seen before: one look at the table for all of it rather
        # than one per change.
        seen = await asyncio.to_thread(self._seen_among, changes + listed)
        late = await asyncio.gather(*(self._in_full(c) for c in listed if c.key not in seen))
        new = sorted([*(c for c in changes if c.key not in seen), *late], key=_made_at)
        events = await self._events(new, webhooks, routes)
        newest = max((c.last_updated for c in changes + listed if c.last_updated), default=cursor)
        truncated = result.truncated or (listing is not None and listing.truncated)
        # The read that covered the window: a sweep's listing, or its only read.
        began = _instant((listing or result).meta.get("lastUpdated")) or cursor
        return _Read(
            resource_type,
            events,
            cursor,
            # A truncated read has not seen the oldest changes: its cursor stays.
            cursor if truncated else max(newest, cursor),
            # A truncated sweep is no sweep: the mark stays.
            mark=max(began, cursor) if sweep and not truncated else None,
            clock=clock,
        )

    async def _history(self, resource_type: str, since: datetime, *, listing: bool) -> SearchResult:
        """The type's ``_history`` since ``since``; only ids and versions with ``listing``."""
        params = [
            ("_since", since.isoformat(timespec="milliseconds")),
            ("_count", str(self.page_size)),
        ]
        if listing:
            params.append(("_elements", "id"))
        result = await self.hapi.history(resource_type, params=params, max_pages=self.max_pages)
        if result.truncated:
            _log.error(
                "history catch-up hit its page cap; the rest follows on the next round",
                extra={"resource_type": resource_type},
            )
        return result

    async def _in_full(self, listed: Change) -> Change:
        """The change a sweep listed, with its resource as HAPI keeps that version. One whose
        version is gone (expunged) stays as listed: it routes to nobody."""
        if listed.deleted:
            return listed
        try:
            async with self._lookups:
                resource = await self.hapi.vread(
                    listed.resource_type, listed.resource_id, listed.version
                )
        except (NotFoundError, GoneError):
            return listed
        return replace(listed, resource=resource)

    async def _moved(self, read: _Read, made: set[str]) -> None:
        """Move the type's cursor past what ``read`` recorded, and its mark after a sweep; note
        whether a burst of the type's changes has ended."""
        kind = read.resource_type
        if read.mark is not None:
            late = sum(
                1
                for e in read.events
                if e.event_id in made and (e.change.last_updated or read.cursor) < read.cursor
            )
            if late:
                _log.info(
                    "a sweep of HAPI's history found changes committed late",
                    extra={"resource_type": kind, "count": late},
                )
            await asyncio.to_thread(self._write_cursor, kind, read.newest, read.mark)
            self._swept[kind] = read.clock
            self._busy.discard(kind)
            self._settled.discard(kind)
            return
        if any(e.event_id in made for e in read.events):
            self._busy.add(kind)
        elif kind in self._busy:
            self._settled.add(kind)
        if read.newest > read.cursor:
            await asyncio.to_thread(self._write_cursor, kind, read.newest, None)

    async def _events(
        self, changes: list[Change], webhooks: list[Registration], routes: Routes
    ) -> list[_Event]:
        """The events of ``changes``, each with the webhooks that want it. Their routings are
        looked up side by side: a feed that routed one change at a time fell behind twenty busy
        writers."""
        # With no webhook registered nobody is told; the changes are only marked seen.
        routings = (
            await asyncio.gather(*(self._routing(change, routes) for change in changes))
            if webhooks
            else [_NOBODY] * len(changes)
        )
        events: list[_Event] = []
        for change, routing in zip(changes, routings, strict=True):
            event_id = str(uuid.uuid4())
            # The version is marked seen even when nobody wants it, so it is looked at once.
            wanted = [w.id for w in webhooks if routing.wanted_by(w)]
            events.append(_Event(change, event_id, _payload(event_id, change, routing), wanted))
        return events

    async def _routing(self, change: Change, routes: Routes) -> Routing:
        written = self.store.own_writes.concerned_by(change.key)
        if written is not None:
            # Written through this instance: routed by the contract as that write left it.
            return _routing_of(written)
        resource = change.resource
        if resource is None and change.version.isdigit() and int(change.version) > 1:
            # A deletion: the version before it says what was deleted.
            try:
                async with self._lookups:
                    resource = await self.hapi.vread(
                        change.resource_type, change.resource_id, int(change.version) - 1
                    )
            except (NotFoundError, GoneError):
                resource = None
        if resource is None:
            return _NOBODY
        contract_id = contract_of(resource)
        if contract_id is not None:
            if contract_id not in routes:
                routes[contract_id] = asyncio.ensure_future(
                    self._contract_routing(change, contract_id)
                )
            routing = await routes[contract_id]
            if routing is not None:
                return routing
        return Routing(contract_id, await self._patient_of(resource), frozenset())

    async def _contract_routing(self, change: Change, contract_id: str) -> Routing | None:
        """Who changes of the contract concern, by its records as stored, read once: they route
        a change whether or not they still read as a contract. None when it has no records."""
        try:
            async with self._lookups:
                records = await self.store.stored_records(contract_id)
        except ContractNotFoundError:
            return None
        return _routing_from(change, contract_id, records)

    async def _patient_of(self, resource: Resource) -> frozenset[str]:
        references = [resource.get("subject", {}).get("reference")]
        references += [p.get("actor", {}).get("reference") for p in resource.get("participant", [])]
        for reference in references:
            if isinstance(reference, str) and reference.startswith("Patient/"):
                try:
                    async with self._lookups:
                        patient = await self.hapi.read("Patient", reference.split("/")[1])
                except (NotFoundError, GoneError):
                    return frozenset()
                return frozenset(
                    f"{i['system']}|{i['value']}"
                    for i in patient.get("identifier", [])
                    if "system" in i and "value" in i
                )
        return frozenset()

    def _seen_among(self, changes: list[Change]) -> set[tuple[str, str, str]]:
        """The keys of those ``changes`` already turned into events."""
        keys = {change.key for change in changes}
        by_type: dict[str, set[str]] = {}
        for resource_type, resource_id, _ in keys:
            by_type.setdefault(resource_type, set()).add(resource_id)
        seen: set[tuple[str, str, str]] = set()
        with Session(self.engine) as session:
            for resource_type, unique in by_type.items():
                ids = sorted(unique)
                for start in range(0, len(ids), _IDS_PER_QUERY):
                    rows = session.execute(
                        select(SeenChange.resource_id, SeenChange.version).where(
                            SeenChange.resource_type == resource_type,
                            SeenChange.resource_id.in_(ids[start : start + _IDS_PER_QUERY]),
                        )
                    )
                    seen.update((resource_type, i, v) for i, v in rows)
        return seen & keys

    def _commit(self, events: list[_Event]) -> set[str]:
        """Mark the events' changes seen and enqueue their deliveries, in one transaction;
        returns the ids of the events made (not those another instance made first)."""
        now = datetime.now(UTC)
        try:
            with Session(self.engine) as session, session.begin():
                _insert(session, events, now)
        except IntegrityError:
            # Another instance (or the other path) recorded one of them first: each on its own.
            made: set[str] = set()
            for number, event in enumerate(events):
                try:
                    with Session(self.engine) as session, session.begin():
                        _insert(session, [event], now + timedelta(microseconds=number))
                except IntegrityError:
                    continue
                made.add(event.event_id)
            return made
        return {event.event_id for event in events}

    def _read_cursor(self, resource_type: str) -> tuple[datetime | None, datetime | None]:
        """The type's cursor and its sweep mark."""
        names = (_cursor_name(resource_type), _CURSOR, _mark_name(resource_type))
        with Session(self.engine) as session:
            rows = session.execute(
                select(SyncState.name, SyncState.value).where(SyncState.name.in_(names))
            )
            values: dict[str, str] = dict(rows.all())
        return _instant(values.get(names[0], values.get(_CURSOR))), _instant(values.get(names[2]))

    def _write_cursor(self, resource_type: str, moment: datetime, mark: datetime | None) -> None:
        """Move the type's cursor to ``moment`` and, given one, its mark to ``mark``; neither
        ever moves back (another instance may have moved it further)."""
        moves = [(_cursor_name(resource_type), moment)]
        if mark is not None:
            moves.append((_mark_name(resource_type), mark))
        with Session(self.engine) as session, session.begin():
            for name, value in moves:
                row = session.get(SyncState, name)
                if row is None:
                    session.add(SyncState(name=name, value=value.isoformat()))
                elif (_instant(row.value) or value) <= value:
                    row.value = value.isoformat()


def _cursor_name(resource_type: str) -> str:
    return f"{_CURSOR}:{resource_type}"


def _mark_name(resource_type: str) -> str:
    return f"{_SWEPT}:{resource_type}"


_NOBODY = Routing(None, frozenset(), frozenset())


@dataclass(frozen=True)
class _Read:
    """One type's read of a round: the events it found, and where its cursor goes once they
    are recorded."""

    resource_type: str
    events: list[_Event]
    cursor: datetime
    """The cursor the read began from."""
    newest: datetime
    """The newest stamp it saw (the cursor, when it saw nothing newer or was cut short)."""
    mark: datetime | None
    """After a complete sweep, the type's next mark: HAPI's clock as it read the window."""
    clock: float
    """The loop's clock when it began."""


@dataclass(frozen=True)
class _Event:
    """A change about to be announced: its event and the webhooks that want it."""

    change: Change
    event_id: str
    payload: dict[str, Any]
    webhook_ids: list[str]


def _insert(session: Session, events: list[_Event], now: datetime) -> None:
    """Mark the events' changes seen and enqueue their deliveries, due a microsecond apart in
    the order the changes were made; a statement for each table, not one per row."""
    seen: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for number, event in enumerate(events):
        moment = now + timedelta(microseconds=number)
        change = event.change
        seen.append(
            {
                "resource_type": change.resource_type,
                "resource_id": change.resource_id,
                "version": change.version,
                "event_id": event.event_id,
                "seen_at": moment,
            }
        )
        deliveries += delivery_rows(event.event_id, event.payload, event.webhook_ids, moment)
    session.execute(insert(SeenChange), seen)
    if deliveries:
        session.execute(insert(Delivery), deliveries)


def _payload(event_id: str, change: Change, routing: Routing) -> dict[str, Any]:
    reference = f"{change.resource_type}/{change.resource_id}"
    return {
        "id": event_id,
        "type": f"{change.resource_type}.{change.kind}",
        "occurredAt": change.last_updated.isoformat() if change.last_updated else None,
        "resource": {
            "resourceType": change.resource_type,
            "id": change.resource_id,
            "versionId": change.version,
            "reference": f"{reference}/_history/{change.version}",
        },
        "contract": _contract_of(routing),
    }


def _contract_of(routing: Routing) -> dict[str, Any] | None:
    if routing.contract_id is None:
        return None
    if routing.readable:
        return {"id": routing.contract_id}
    return {"id": routing.contract_id, "readable": False}


def _routing_of(whom: Concerned) -> Routing:
    return Routing(whom.contract_id, whom.patients, whom.care_units, whom.responsible_unit)


def _routing_from(change: Change, contract_id: str, records: Resource) -> Routing:
    """Who a change concerns, from its contract's stored records, readable or not."""
    try:
        return _routing_of(concerned(contract_from_bundle(records, contract_id)))
    except UnreadableContractError as exc:
        # Reads of it fail until somebody mends it: say so where an operator looks, and
        # route the news by the records as stored, so the units holding it hear of it.
        _log.warning(
            "a change left its contract unreadable; it is announced by its stored records",
            extra={
                "contract_id": contract_id,
                "resource": f"{change.resource_type}/{change.resource_id}",
                "version": change.version,
                "reason": str(exc),
            },
        )
        return _routing_by_structure(records, contract_id)


def _routing_by_structure(records: Resource, contract_id: str) -> Routing:
    """Who a change of an unreadable contract concerns, from its stored records (a search
    Bundle with the includes the store reads): the CarePlan's subject, the organization of its
    author (the responsible unit), and every organization among the records.

    Only structure is read, no codes or texts, so whatever made the contract unreadable does not
    keep its units from hearing of it.
    """
    resources: list[Resource] = [
        e["resource"] for e in records.get("entry") or [] if isinstance(e.get("resource"), dict)
    ]
    by_reference: dict[str, Resource] = {
        f"{r.get('resourceType')}/{r.get('id')}": r for r in resources
    }

    def follow(reference: object) -> Resource:
        target = reference.get("reference") if isinstance(reference, dict) else None
        return by_reference.get(str(target).split("/_history/")[0], {})

    careplan: Resource = next(
        (
            r
            for r in resources
            if r.get("resourceType") == "CarePlan" and contract_of(r) == contract_id
        ),
        {},
    )
    patients = _tokens_of(follow(careplan.get("subject")))
    author = follow(careplan.get("author"))
    responsible = _tokens_of(follow(author.get("organization")))
    units = frozenset().union(
        *(_tokens_of(r) for r in resources if r.get("resourceType") == "Organization")
    )
    return Routing(
        contract_id,
        patients,
        units,
        min(responsible) if responsible else None,
        readable=False,
    )


def _tokens_of(resource: Resource) -> frozenset[str]:
    identifiers = resource.get("identifier")
    return frozenset(
        f"{i['system']}|{i['value']}"
        for i in (identifiers if isinstance(identifiers, list) else [])
        if isinstance(i, dict)
        and isinstance(i.get("system"), str)
        and isinstance(i.get("value"), str)
    )


def _server_now(meta: Resource) -> datetime:
    return _instant(meta.get("lastUpdated")) or datetime.now(UTC)


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
