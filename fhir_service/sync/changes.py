"""Changes in HAPI become webhook events, each once: the ``_history`` feed and its cursor.

HAPI's rest-hook Subscriptions only wake the feed up (they carry no payload, so nothing clinical
travels twice); what changed is always read from HAPI's ``_history`` since the cursor kept in the
service DB. The feed also runs at start and on a timer, so changes made while the service was
down, or whose rest-hook HAPI dropped, still go out.

Each watched type has a cursor of its own: the newest ``lastUpdated`` its own read saw. A cursor
shared by the types read one after the other would lose changes: the types later in a round are
read later (after the lookups the earlier ones needed), so their newest change can be far past
what the first type's read could see, and the next round would start after changes of the first
type that committed meanwhile. Windows overlap the cursor, because HAPI stamps a transaction's
``lastUpdated`` when it starts, not when it commits: a transaction still running at a read commits
later with an older stamp. The ``seen_changes`` table keeps overlapping reads and several
instances from making an event twice.

An event names the resource version that changed and its contract, not the patient: receivers
read what they need with their own access rights. A change that leaves its contract unreadable (a
record edited in HAPI so that the mapping cannot read it back) is announced all the same, to the
webhooks its stored records route it to, marked ``"readable": false``, and logged: the contract
needs mending, and the units that hold it are the ones to hear of it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_service.contract import Contract, Identifier
from fhir_service.fhir import GoneError, HapiClient, NotFoundError
from fhir_service.mapping.from_fhir import UnreadableContractError, contract_from_bundle
from fhir_service.mapping.identifier_systems import system_of
from fhir_service.mapping.ownership import contract_of
from fhir_service.servicedb.tables import SeenChange, SyncState
from fhir_service.store import ContractNotFoundError, ContractStore
from fhir_service.sync.webhook_deliveries import enqueue
from fhir_service.sync.webhook_registrations import Registration, WebhookRegistry

__all__ = ["WATCHED_TYPES", "Change", "ChangeFeed", "Routing", "changes_in"]

_log = logging.getLogger(__name__)

WATCHED_TYPES = ("CarePlan", "CareTeam", "Appointment")

_CURSOR = "history_cursor"
"""The name of the cursor the types shared before each had its own: where those start."""
# Well below the bound parameters SQLite takes in one statement.
_IDS_PER_QUERY = 500

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
    changes.sort(key=lambda c: c.last_updated or datetime.max.replace(tzinfo=UTC))
    return changes


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
    ) -> None:
        self.hapi = hapi
        self.engine = engine
        self.store = store
        self.registry = registry
        self.overlap = overlap
        self.page_size = page_size
        self.max_pages = max_pages

    async def catch_up(self) -> int:
        """Turn every change since the cursors into events; returns how many were new."""
        webhooks = await asyncio.to_thread(self.registry.list)
        # A contract written once changes many resources; its routing is looked up once a round.
        routes: dict[str, Routing] = {}
        made = 0
        for resource_type in WATCHED_TYPES:
            made += await self._catch_up(resource_type, webhooks, routes)
        return made

    async def _catch_up(
        self, resource_type: str, webhooks: list[Registration], routes: dict[str, Routing]
    ) -> int:
        cursor = await asyncio.to_thread(self._read_cursor, resource_type)
        if cursor is None:
            # First start: begin at HAPI's "now". Nothing registered before can want older news.
            start = await self.hapi.history(resource_type, params=[("_count", "1")])
            await asyncio.to_thread(self._write_cursor, resource_type, _server_now(start.meta))
            return 0
        since = cursor - self.overlap
        result = await self.hapi.history(
            resource_type,
            params=[
                ("_since", since.isoformat(timespec="milliseconds")),
                ("_count", str(self.page_size)),
            ],
            max_pages=self.max_pages,
        )
        if result.truncated:
            _log.error(
                "history catch-up hit its page cap; the rest follows on the next round",
                extra={"resource_type": resource_type},
            )
        changes = changes_in(result.entries)
        # The window overlaps the last read: most of it was seen, and is skipped after one look
        # at the table rather than one per change.
        seen = await asyncio.to_thread(self._seen_among, changes)
        made = 0
        newest = cursor
        for change in changes:
            if change.key not in seen:
                made += await self._record(change, webhooks, routes)
            if change.last_updated is not None and not result.truncated:
                newest = max(newest, change.last_updated)
        if newest > cursor:
            await asyncio.to_thread(self._write_cursor, resource_type, newest)
        return made

    async def _record(
        self, change: Change, webhooks: list[Registration], routes: dict[str, Routing]
    ) -> int:
        # With no webhook registered nobody is told; the change is only marked seen.
        routing = await self._routing(change, routes) if webhooks else _NOBODY
        # The version is marked seen even when nobody wants it, so it is looked at once.
        wanted = [w.id for w in webhooks if routing.wanted_by(w)]
        event_id = str(uuid.uuid4())
        payload = _payload(event_id, change, routing)
        made = await asyncio.to_thread(self._commit, change, event_id, payload, wanted)
        return int(made)

    async def _routing(self, change: Change, routes: dict[str, Routing]) -> Routing:
        resource = change.resource
        if resource is None and change.version.isdigit() and int(change.version) > 1:
            # A deletion: the version before it says what was deleted.
            try:
                resource = await self.hapi.vread(
                    change.resource_type, change.resource_id, int(change.version) - 1
                )
            except (NotFoundError, GoneError):
                resource = None
        if resource is None:
            return _NOBODY
        contract_id = contract_of(resource)
        if contract_id in routes:
            return routes[contract_id]
        if contract_id is not None:
            try:
                # The records as stored, read once: they route the change whether or not they
                # still read as a contract.
                records = await self.store.stored_records(contract_id)
            except ContractNotFoundError:
                pass
            else:
                routes[contract_id] = _routing_from(change, contract_id, records)
                return routes[contract_id]
        return Routing(contract_id, await self._patient_of(resource), frozenset())

    async def _patient_of(self, resource: Resource) -> frozenset[str]:
        references = [resource.get("subject", {}).get("reference")]
        references += [p.get("actor", {}).get("reference") for p in resource.get("participant", [])]
        for reference in references:
            if isinstance(reference, str) and reference.startswith("Patient/"):
                try:
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

    def _commit(
        self, change: Change, event_id: str, payload: dict[str, Any], webhook_ids: list[str]
    ) -> bool:
        now = datetime.now(UTC)
        try:
            with Session(self.engine) as session, session.begin():
                session.add(
                    SeenChange(
                        resource_type=change.resource_type,
                        resource_id=change.resource_id,
                        version=change.version,
                        event_id=event_id,
                        seen_at=now,
                    )
                )
                session.flush()
                enqueue(session, event_id, payload, webhook_ids, now)
        except IntegrityError:
            # Another instance (or the other path) recorded this version first.
            return False
        return True

    def _read_cursor(self, resource_type: str) -> datetime | None:
        names = (_cursor_name(resource_type), _CURSOR)
        with Session(self.engine) as session:
            rows = session.execute(
                select(SyncState.name, SyncState.value).where(SyncState.name.in_(names))
            )
            values: dict[str, str] = dict(rows.all())
        return _instant(values.get(names[0], values.get(_CURSOR)))

    def _write_cursor(self, resource_type: str, moment: datetime) -> None:
        name = _cursor_name(resource_type)
        with Session(self.engine) as session, session.begin():
            row = session.get(SyncState, name)
            if row is None:
                session.add(SyncState(name=name, value=moment.isoformat()))
            elif (_instant(row.value) or moment) <= moment:
                row.value = moment.isoformat()


def _cursor_name(resource_type: str) -> str:
    return f"{_CURSOR}:{resource_type}"


_NOBODY = Routing(None, frozenset(), frozenset())


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


def _routing_of(contract: Contract) -> Routing:
    organizations = [contract.responsible_unit]
    organizations += [p.organization for p in contract.professionals]
    organizations += [c.professional.organization for c in contract.care_contacts]
    organizations += [a.organization for a in contract.activities if a.organization is not None]
    organizations += [t.organization for t in contract.agreed_times]
    return Routing(
        contract.id,
        frozenset({_token(contract.patient.identifier)}),
        frozenset(_token(o.identifier) for o in organizations),
        _token(contract.responsible_unit.identifier),
    )


def _routing_from(change: Change, contract_id: str, records: Resource) -> Routing:
    """Who a change concerns, from its contract's stored records, readable or not."""
    try:
        return _routing_of(contract_from_bundle(records, contract_id))
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


def _token(identifier: Identifier) -> str:
    return f"{system_of(identifier)}|{identifier.value}"


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
