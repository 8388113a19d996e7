"""The care units' time types as HAPI holds them: `TimeTypeCatalogue`, read once and kept.

Each unit's own system defines, changes and retires its time types through the API; each is a
HealthcareService in HAPI (`fhir_service.mapping.time_types`). Booking reads them on every
request, so the catalogue keeps them in memory and reads them again only when they change:
right after a change made through this instance, when HAPI's rest-hook Subscription on time
types wakes it (a change made through another instance, or straight in HAPI), on a timer in
case a hook was lost, and once when a request names a type it does not know (it may have just
been defined through another instance). The hot path never waits for HAPI otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_service.contract import (
    CareUnitTimes,
    Identifier,
    Language,
    Organization,
    OrganizationKind,
    TimeType,
    TimeTypes,
)
from fhir_service.errors import (
    BrokenRecordError,
    PreconditionFailedError,
    ServiceError,
    StaleRecordError,
)
from fhir_service.fhir import ConflictError, HapiClient
from fhir_service.mapping import elements as element
from fhir_service.mapping import urls
from fhir_service.mapping.provenance import record_change_entry
from fhir_service.mapping.time_types import (
    DefinedTimeType,
    UnreadableTimeTypeError,
    defined_time_type,
    time_type_identifier,
    time_type_resource,
    unit_kind_of,
)
from fhir_service.mapping.to_fhir import care_unit_entries
from fhir_service.store import Change
from fhir_service.waits import woken

__all__ = ["Defined", "TimeTypeCatalogue"]

Resource = dict[str, Any]

_log = logging.getLogger(__name__)
_PAGE = 500
_MOST_PAGES = 40
_MISS_REREAD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Defined:
    """A time type as stored after a change: its unit and the unit's clock, its
    HealthcareService, what it was before (None when new), and from when it applies (to times
    booked from then on)."""

    unit: Organization
    time_zone: str
    kind: TimeType
    resource: Resource
    before: TimeType | None
    applies_from: datetime


class TimeTypeCatalogue:
    """Every care unit's time types, kept in memory and read again when they change."""

    def __init__(self, hapi: HapiClient) -> None:
        self.hapi = hapi
        self.changed = asyncio.Event()
        """Set by HAPI's rest-hook on time types: read them again now."""
        self._current: TimeTypes | None = None
        self._defined: dict[str, DefinedTimeType] = {}
        # The HealthcareService each was read from, by the same identifier.
        self._stored: dict[str, Resource] = {}
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def current(self, *, knowing: Iterable[tuple[Identifier, str]] = ()) -> TimeTypes:
        """The time types as last read (read from HAPI the first time). When one of
        ``knowing`` (a unit and a code a request names) is not among them, they are read again
        first, at most once a second: it may be a type just defined through another instance."""
        if self._current is None:
            async with self._lock:
                if self._current is None:
                    await self._read()
        assert self._current is not None  # read above
        missing = any(code not in self._current.known(unit) for unit, code in knowing)
        if missing and time.monotonic() - self._read_at > _MISS_REREAD_SECONDS:
            return await self.refresh()
        return self._current

    async def refresh(self) -> TimeTypes:
        """Read the time types from HAPI again."""
        async with self._lock:
            await self._read()
        assert self._current is not None  # read above
        return self._current

    async def stored(self, unit: Identifier, code: str) -> Resource | None:
        """The HealthcareService of ``unit``'s time type ``code`` as HAPI holds it now; None
        when there is none."""
        found = await self.hapi.search(
            "HealthcareService",
            [("identifier", f"{urls.ID_TIME_TYPE}|{time_type_identifier(unit, code)}")],
            max_pages=1,
        )
        matches = found.matches()
        return matches[0] if matches else None

    async def define(
        self,
        defined: DefinedTimeType,
        language: Language,
        by: Change,
        *,
        if_match: str | None = None,
    ) -> Defined:
        """Write ``defined`` (named in ``language``, translated into the others) as its unit's
        time type: new, or changed from what it was; with ``if_match``, only if the stored
        one is still at that version. The unit's records are made if absent."""
        before_resource = await self.stored(defined.unit.identifier, defined.kind.code)
        before = None if before_resource is None else _readable(before_resource)
        entries, _ = care_unit_entries(defined.unit)
        named = element.identifier(defined.unit.identifier)
        organization = element.identity_url("Organization", named["system"], named["value"])
        resource = time_type_resource(defined, language)
        resource["providedBy"]["reference"] = organization
        # By its identifier: two first definitions at once make one record, not two.
        request: Resource = {
            "method": "PUT",
            "url": f"HealthcareService?identifier={urls.ID_TIME_TYPE}|{defined.identifier}",
        }
        if if_match is not None and before_resource is not None:
            request = {
                "method": "PUT",
                "url": f"HealthcareService/{before_resource['id']}",
                "ifMatch": if_match,
            }
            resource["id"] = before_resource["id"]
        service_url = f"urn:uuid:{uuid.uuid4()}"
        moment = datetime.now(UTC)
        entries.append({"fullUrl": service_url, "resource": resource, "request": request})
        entries.append(
            record_change_entry(
                service_url,
                by.author,
                activity="define-time-type" if defined.kind.active else "retire-time-type",
                created=before_resource is None,
                recorded=moment,
            )
        )
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        try:
            await self.hapi.transaction(bundle)
        except ConflictError as exc:
            message = f"time type {defined.kind.code!r} changed meanwhile; read it and send again"
            if if_match is not None:
                raise PreconditionFailedError(message) from exc
            raise StaleRecordError(message) from exc
        # Read back with the others, as every instance reads them: one read, not two.
        await self.refresh()
        now = self._defined.get(defined.identifier)
        stored = self._stored.get(defined.identifier)
        if now is None or stored is None:
            raise BrokenRecordError(f"time type {defined.kind.code!r} cannot be read back")
        return Defined(now.unit, now.time_zone, now.kind, stored, before, moment)

    async def refresh_forever(self, ready: asyncio.Event, every_seconds: float) -> None:
        """Read the time types again when HAPI says they changed, or every ``every_seconds``,
        once HAPI is ready, until cancelled."""
        await ready.wait()
        while True:
            self.changed.clear()
            try:
                await self.refresh()
            except ServiceError as exc:
                _log.warning("reading the time types failed", extra={"reason": str(exc)})
            await woken(self.changed, every_seconds)

    async def _read(self) -> None:
        found = await self.hapi.search(
            "HealthcareService",
            [
                ("identifier", f"{urls.ID_TIME_TYPE}|"),
                ("_include", "HealthcareService:organization"),
                ("_count", str(_PAGE)),
            ],
            max_pages=_MOST_PAGES,
        )
        if found.truncated:
            _log.warning(
                "more time types than are read at once; the rest are not offered",
                extra={"read": len(found.matches())},
            )
        kinds = {
            f"Organization/{e['resource'].get('id')}": unit_kind_of(e["resource"])
            for e in found.entries
            if e.get("search", {}).get("mode") == "include"
            and e.get("resource", {}).get("resourceType") == "Organization"
        }
        units: dict[Identifier, list[DefinedTimeType]] = {}
        stored: dict[str, Resource] = {}
        for resource in found.matches():
            organization = str(resource.get("providedBy", {}).get("reference", ""))
            try:
                defined = defined_time_type(
                    resource, kinds.get(organization, OrganizationKind.CARE_UNIT)
                )
            except UnreadableTimeTypeError as exc:
                # Written around this service and not as the profile says: not offered, and
                # said for an operator to mend; the other units' types are read all the same.
                _log.warning(
                    "a time type in HAPI cannot be read",
                    extra={
                        "resource": f"HealthcareService/{resource.get('id')}",
                        "reason": str(exc),
                    },
                )
                continue
            units.setdefault(defined.unit.identifier, []).append(defined)
            stored[defined.identifier] = resource
        self._defined = {d.identifier: d for kinds_ in units.values() for d in kinds_}
        self._stored = stored
        self._read_at = time.monotonic()
        self._current = TimeTypes(
            CareUnitTimes(
                unit=kinds_[0].unit,
                time_zone=kinds_[0].time_zone,
                time_types=tuple(sorted((d.kind for d in kinds_), key=lambda k: k.code)),
            )
            for kinds_ in units.values()
        )


def _readable(resource: Resource) -> TimeType | None:
    try:
        return defined_time_type(resource).kind
    except UnreadableTimeTypeError:
        return None
