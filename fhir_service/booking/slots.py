"""A care unit's bookable times in HAPI: `Slots` publishes them and finds the free ones, the
ground floor of `fhir_service.booking.service.BookingService`.

Publishing is one transaction of conditional creates, each Slot named by its unit, time type and
start, so publishing the same times again changes nothing and times already booked stay booked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_service.booking.errors import DoesNotFitError, SlotNotFoundError
from fhir_service.booking.resources import PublishedTime, schedule_identifier, slot_entries
from fhir_service.contract import Identifier, Organization, TimeType
from fhir_service.errors import BusyError
from fhir_service.fhir import ConflictError, HapiClient, NotFoundError
from fhir_service.mapping import urls
from fhir_service.mapping.elements import instant

__all__ = ["BookableSlot", "Published", "SlotRecord", "Slots"]

Resource = dict[str, Any]

_CLOSE_PAGE = 100
_MOST_ROUNDS = 200


@dataclass(frozen=True, slots=True)
class BookableSlot:
    """A free Slot as the booking facade shows it."""

    id: str
    start: datetime
    end: datetime
    care_unit: Identifier
    time_type: TimeType


@dataclass(frozen=True, slots=True)
class Published:
    """What one publishing request did: times new now, and times that were there already."""

    created: int
    existing: int


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """A Slot as HAPI holds it, at the version read, and the code of its time type."""

    resource: Resource
    time_type: str | None

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def version(self) -> str:
        return str(self.resource["meta"]["versionId"])

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(self.resource["start"])

    @property
    def end(self) -> datetime:
        return datetime.fromisoformat(self.resource["end"])


class Slots:
    """Publishes and finds bookable times in HAPI."""

    def __init__(self, hapi: HapiClient) -> None:
        self.hapi = hapi

    async def publish(
        self, unit: Organization, kind: TimeType, times: list[PublishedTime]
    ) -> Published:
        """Publish ``times`` of ``unit``'s time type ``kind``; those already there stay as
        they are (booked or not)."""
        for time in times:
            if time.end <= time.start:
                raise DoesNotFitError(f"{instant(time.start)}: ends before it starts")
        bundle: Resource = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": slot_entries(unit, kind, times),
        }
        answer = await self.hapi.transaction(bundle, idempotent=True)
        statuses = [
            str(e.get("response", {}).get("status", ""))
            for e, sent in zip(answer.get("entry", []), bundle["entry"], strict=True)
            if sent["resource"]["resourceType"] == "Slot"
        ]
        created = sum(1 for s in statuses if s.startswith("201"))
        return Published(created=created, existing=len(statuses) - created)

    async def free_slots(
        self,
        unit: Organization,
        kind: TimeType,
        start: datetime,
        end: datetime,
        *,
        count: int = 50,
    ) -> list[BookableSlot]:
        """Free Slots of ``unit``'s time type ``kind`` that start in [start, end), soonest
        first, at most ``count``."""
        params = [
            ("schedule.identifier", schedule_identifier(unit, kind)),
            ("status", "free"),
            ("start", f"ge{instant(start)}"),
            ("start", f"lt{instant(end)}"),
            ("_sort", "start"),
            ("_count", str(count)),
        ]
        found = await self.hapi.search("Slot", params, max_pages=1)
        return [
            BookableSlot(
                id=str(slot["id"]),
                start=datetime.fromisoformat(slot["start"]),
                end=datetime.fromisoformat(slot["end"]),
                care_unit=unit.identifier,
                time_type=kind,
            )
            for slot in found.matches()
        ]

    async def close_free(self, unit: Organization, kind: TimeType) -> int:
        """Make every free Slot to come of ``unit``'s time type ``kind`` unavailable
        (``busy-unavailable``); how many it closed. Each page is one transaction at the
        versions read, so a Slot booked meanwhile stays booked: that page is read again."""
        closed = 0
        for _ in range(_MOST_ROUNDS):
            free = await self._free_to_come(unit, kind, _CLOSE_PAGE)
            if not free:
                return closed
            bundle: Resource = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [slot_entry(SlotRecord(s, kind.code), "busy-unavailable") for s in free],
            }
            try:
                await self.hapi.transaction(bundle)
            except ConflictError:
                continue  # one was booked or held meanwhile: read the page again
            closed += len(free)
        raise BusyError(f"free {kind.code!r} times kept changing; {closed} closed, send again")

    async def count_free(self, unit: Organization, kind: TimeType) -> int:
        """How many free Slots to come ``unit``'s time type ``kind`` has."""
        params = [*self._free_criteria(unit, kind), ("_summary", "count")]
        return (await self.hapi.search("Slot", params, max_pages=1)).total or 0

    async def _free_to_come(self, unit: Organization, kind: TimeType, count: int) -> list[Resource]:
        params = [*self._free_criteria(unit, kind), ("_count", str(count))]
        return (await self.hapi.search("Slot", params, max_pages=1)).matches()

    @staticmethod
    def _free_criteria(unit: Organization, kind: TimeType) -> list[tuple[str, str]]:
        return [
            ("schedule.identifier", schedule_identifier(unit, kind)),
            ("status", "free"),
            ("start", f"ge{instant(datetime.now(UTC))}"),
        ]

    async def slot(self, slot_id: str) -> SlotRecord:
        """The Slot ``slot_id`` as HAPI holds it now."""
        try:
            resource = await self.hapi.read("Slot", slot_id)
        except NotFoundError as exc:
            raise SlotNotFoundError(f"no slot {slot_id!r}") from exc
        codes = [
            c.get("code")
            for concept in resource.get("serviceType", [])
            for c in concept.get("coding", [])
            if c.get("system") == urls.CS_TIME_TYPE
        ]
        return SlotRecord(resource, codes[0] if codes else None)


def slot_entry(slot: SlotRecord, status: str) -> Resource:
    """The transaction entry that sets ``slot`` to ``status``, only if it is still as read."""
    resource = {k: v for k, v in slot.resource.items() if k != "meta"} | {"status": status}
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"Slot/{slot.id}", "ifMatch": f'W/"{slot.version}"'},
    }
