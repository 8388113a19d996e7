"""The service as it runs: every part it is made of, built once from its settings (`Service`),
what each request's caller is given of it, and the work it does in the background.

The web layer (`fhir_service.api`) holds one `Service` and asks it for what a request needs:
the caller's records, contracts, booking and webhooks, bound to their walls and audit record;
the audit record itself; readiness. It never builds a part, so it imports neither HAPI's client
nor the service database; the parts are put together here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from fhir_service import servicedb
from fhir_service.audit import AccessRecord, AuditOutbox, AuditWriter, Witness, outbox
from fhir_service.booking import (
    BookingService,
    TimeTypeCatalogue,
    release_lapsed_forever,
    seed_forever,
)
from fhir_service.contract import Identifier
from fhir_service.fhir import GoneError, HapiClient, HapiUnavailableError, NotFoundError
from fhir_service.mapping import DefinedTimeType
from fhir_service.metrics import Metrics
from fhir_service.records import (
    CallerBooking,
    CallerConsents,
    CallerContracts,
    CallerRecords,
    CallerWebhooks,
    Replays,
    leave_in_force,
)
from fhir_service.security import Access, AccessDeniedError, Leave, claimed_identifier
from fhir_service.servicedb import IdempotencyStore, ThisInstance
from fhir_service.settings import Settings
from fhir_service.store import Change, ContractStore
from fhir_service.sync import (
    Notifications,
    TargetPolicy,
    conformance,
    housekeeping,
    keep_trying,
    webhook_client,
)

__all__ = ["Check", "Service"]

_log = logging.getLogger(__name__)
Resource = dict[str, Any]
# SMART launch contexts name a FHIR Patient id; their national identifiers are looked up once.
_PATIENT_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Check:
    """The state of one dependency: up, or down and why (said for an operator)."""

    up: bool
    detail: str | None = None


class Service:
    """One running instance of the service: HAPI's client, the service database, the contract
    store, change notifications and the audit writer, and their background work."""

    def __init__(
        self, settings: Settings, metrics: Metrics, *, seed: list[DefinedTimeType] | None = None
    ) -> None:
        if settings.hapi_url is None:
            raise ValueError("the service needs settings.hapi_url; the CLI fills it in")
        self.settings = settings
        self.hapi = HapiClient(
            str(settings.hapi_url), metrics, timeout=settings.hapi_timeout_seconds
        )
        self.engine = servicedb.make_engine(settings.resolved_database_url)
        self.instance = ThisInstance(self.engine)
        self.keys = IdempotencyStore(self.engine)
        self.conformance_loaded = asyncio.Event()
        self.schema_ready = asyncio.Event()
        self.seeded = asyncio.Event()
        """Set once the seed's time types are defined (with ``time_types_seed`` only)."""
        self.audit_wake = asyncio.Event()
        self.store = ContractStore(self.hapi, settings.narrative_language)
        self.time_types = TimeTypeCatalogue(self.hapi)
        self._seed = seed
        self.booking_service = BookingService(self.hapi, self.store, self.time_types)
        # Webhook receivers are strangers: no redirects followed, no shared pool with HAPI, and
        # connections only to addresses the target policy admits.
        self._webhook_http = webhook_client(
            allow_private_networks=settings.webhook_allow_private_networks
        )
        self.notifications = Notifications(
            self.hapi,
            self.engine,
            self.store,
            self._webhook_http,
            policy=TargetPolicy(
                allowed_hosts=settings.webhook_hosts,
                allow_http=settings.webhook_allow_http,
                allow_private_networks=settings.webhook_allow_private_networks,
            ),
            hook_url=settings.resolved_hapi_hook_url,
            feed_interval_seconds=settings.change_feed_interval_seconds,
            time_types_changed=self.time_types.changed,
            metrics=metrics,
        )
        self._audit_outbox = AuditOutbox(self.engine)
        self._audit_writer = AuditWriter(self._audit_outbox, self.hapi)
        self._audit_recorder = outbox.AuditRecorder(self.engine, due=self.audit_wake.set)
        metrics.watch_backlogs(self._audit_outbox.pending, self.notifications.outbox.pending)
        self._patients: dict[str, Identifier | None] = {}

    # Background work ---------------------------------------------------------------------

    def start(self, quiet: Callable[[], float]) -> list[asyncio.Task[None]]:
        """Start the background work: the schema, our profiles in HAPI, the audit writer (in
        the lulls ``quiet`` tells of), change notifications, housekeeping, the heartbeat."""
        return [
            asyncio.create_task(work)
            for work in (
                _after(
                    self.schema_ready,
                    lambda: self._audit_writer.run_forever(self.audit_wake, quiet=quiet),
                ),
                self.notifications.run(self.schema_ready),
                housekeeping.tidy_forever(self.engine, self.schema_ready),
                self.instance.beat_forever(self.schema_ready),
                release_lapsed_forever(
                    self.booking_service,
                    self.conformance_loaded,
                    self.settings.booking_hold_sweep_seconds,
                ),
                self.time_types.refresh_forever(
                    self.conformance_loaded, self.settings.change_feed_interval_seconds
                ),
                *(
                    []
                    if self._seed is None
                    else [
                        seed_forever(
                            self.time_types, self._seed, self.conformance_loaded, self.seeded
                        )
                    ]
                ),
                conformance.load_until_done(self.hapi, self.conformance_loaded),
                keep_trying(
                    "migrating the service DB",
                    lambda: asyncio.to_thread(servicedb.migrate, self.engine),
                    self.schema_ready,
                    retry_on=(SQLAlchemyError,),
                ),
            )
        ]

    async def aclose(self) -> None:
        """Keep the outcomes still waiting; let go of the connections to HAPI, the receivers
        and the database."""
        await self._audit_recorder.flush()
        await self._webhook_http.aclose()
        await self.hapi.aclose()
        self.engine.dispose()

    # What one request's caller is given ------------------------------------------------------

    def records(self, access: Access, witness: Witness, change: Change) -> CallerRecords:
        """The FHIR records as the caller may see and change them."""
        return CallerRecords(access, witness, change, self.booking_service)

    def contracts(
        self, access: Access, witness: Witness, change: Callable[[], Change], caller: str
    ) -> CallerContracts:
        """The contracts of the JSON facade as the caller may see and change them, with the
        caller's Idempotency-Keys (``caller`` is the caller as the keys are scoped to)."""
        replays = Replays(self.keys, witness, caller, self.instance.id)
        return CallerContracts(access, witness, change, self.store, replays, self.time_types)

    def booking(
        self, access: Access, witness: Witness, change: Callable[[], Change]
    ) -> CallerBooking:
        """The booking facade as the caller may use it."""
        return CallerBooking(access, witness, change, self.booking_service)

    def consents(self, access: Access, witness: Witness) -> CallerConsents:
        """The patient's leaves for relatives."""
        return CallerConsents(access, witness, self.hapi)

    async def leave_of(self, patient: Identifier, related_person: str) -> Leave | None:
        """The patient's leave for the relative ``related_person`` in force now, if any;
        raises `UnavailableError` or `UpstreamError` when HAPI cannot say."""
        return await leave_in_force(self.hapi, patient, related_person)

    def webhooks(self, access: Access, witness: Witness, owner: str) -> CallerWebhooks:
        """The webhooks the caller registered, and may register."""
        return CallerWebhooks(access, witness, owner, self.notifications.registry)

    async def hapi_statement(self) -> Resource:
        """HAPI's CapabilityStatement, which ours is made from."""
        return await self.hapi.capability_statement()

    # What wraps every request ------------------------------------------------------------

    async def patient_of(self, patient_id: str) -> Identifier | None:
        """The national identifier of the FHIR Patient ``patient_id`` (a SMART launch
        context), None if it names none; raises `UnavailableError` or `UpstreamError` when
        HAPI cannot say."""
        if patient_id not in self._patients:
            if len(self._patients) >= _PATIENT_CACHE_SIZE:
                self._patients.clear()
            self._patients[patient_id] = await self._identifier_of_patient(patient_id)
        return self._patients[patient_id]

    async def open_access(self, record: AccessRecord) -> None:
        """Keep the record of a request about to run, its outcome unknown, before it runs."""
        await self._audit_recorder.keep(outbox.Opened(record, self.instance.id))

    async def keep_access(self, record: AccessRecord, *, opened: bool) -> None:
        """Keep the record of a request answered: anew, or completing the one opened (with
        the next record kept, not waited for: `outbox.AuditRecorder.keep_soon`)."""
        if opened:
            self._audit_recorder.keep_soon(outbox.Completed(record))
        else:
            await self._audit_recorder.keep(outbox.Answered(record))

    async def readiness(self) -> dict[str, Check]:
        """Whether HAPI (serving R4, our profiles loaded) answers and the service database
        takes a write, each checked within the readiness time-out."""
        timeout = self.settings.ready_timeout_seconds
        checks: dict[str, Check] = {}
        try:
            await self.hapi.check_fhir_r4(timeout=timeout)
            checks["hapi"] = Check(up=True)
        except HapiUnavailableError as exc:
            _log.warning("HAPI not ready", extra={"hapi_url": exc.base_url, "reason": exc.reason})
            checks["hapi"] = Check(up=False, detail=f"HAPI FHIR server: {exc.reason}")
        checks["database"] = await self._database(timeout)
        checks["profiles"] = (
            Check(up=True)
            if self.conformance_loaded.is_set()
            else Check(up=False, detail="our profiles are not yet loaded into HAPI")
        )
        if self._seed is not None:
            checks["time_types"] = (
                Check(up=True)
                if self.seeded.is_set()
                else Check(up=False, detail="the seed's time types are not yet defined")
            )
        return checks

    async def _database(self, timeout: float) -> Check:
        try:
            if not self.schema_ready.is_set():
                await asyncio.wait_for(asyncio.to_thread(servicedb.ping, self.engine), timeout)
                return Check(up=False, detail="service database: schema not migrated yet")
            # A write, not a read: a database that answers but cannot be written (a read-only
            # file, a full disk, a replica) cannot keep the audit record of a single request.
            await asyncio.wait_for(asyncio.to_thread(self.instance.beat), timeout)
            return Check(up=True)
        except (SQLAlchemyError, TimeoutError) as exc:
            _log.warning("service DB not ready", extra={"reason": type(exc).__name__})
            return Check(up=False, detail=f"service database: {type(exc).__name__}")

    async def _identifier_of_patient(self, patient_id: str) -> Identifier | None:
        if not patient_id.replace("-", "").replace(".", "").isalnum() or len(patient_id) > 64:
            return None
        try:
            patient = await self.hapi.read("Patient", patient_id)
        except (NotFoundError, GoneError):
            return None
        for identifier in patient.get("identifier", []):
            system, value = identifier.get("system"), identifier.get("value")
            if isinstance(system, str) and isinstance(value, str):
                try:
                    found = claimed_identifier(f"{system}|{value}", patient=True)
                except AccessDeniedError:
                    continue
                if found is not None:
                    return found
        return None


async def _after(ready: asyncio.Event, work: Callable[[], Awaitable[None]]) -> None:
    await ready.wait()
    await work()
