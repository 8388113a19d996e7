"""Bulk export: every contract HAPI holds, one per NDJSON line, in the order they were created.

Contract CarePlans are found by their identifier system alone (``identifier=<system>|``, which
HAPI 8.8 supports). Pages are addressed by ``_offset`` in order of HAPI's internal resource id
(``_sort=_pid``), so each page is one independent request holding its contracts and all they
refer to (:data:`READ_PARAMS`), and a CarePlan stored while the export runs lands after the pages
already read. A contract that cannot be read from its page (HAPI caps the includes of one page)
is read again on its own; one that still does not read is reported, and the export goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from fhir_service.contract import Contract
from fhir_service.fhir import HapiClient, HapiError
from fhir_service.mapping import urls
from fhir_service.mapping.elements import instant
from fhir_service.mapping.from_fhir import (
    READ_PARAMS,
    UnreadableContractError,
    contract_from_bundle,
)

__all__ = ["ExportReport", "Unreadable", "contract_ids", "contract_line", "export_contracts"]

Resource = dict[str, Any]


@dataclass(frozen=True)
class Unreadable:
    """A stored contract that does not read back as one, and why."""

    contract_id: str
    reason: str


@dataclass
class ExportReport:
    """What an export came to."""

    total: int | None = None
    exported: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None

    @property
    def rate(self) -> float:
        """Contracts written per second."""
        return self.exported / self.seconds if self.seconds > 0 else 0.0


def contract_line(contract: Contract) -> str:
    """One NDJSON line of ``contract``, without its server version, as an import expects it."""
    document = contract.model_dump(mode="json", exclude_none=True, exclude={"version"})
    return json.dumps(document, ensure_ascii=False) + "\n"


async def export_contracts(
    hapi: HapiClient,
    out: TextIO,
    *,
    page_size: int = 50,
    since: datetime | None = None,
    on_progress: Callable[[ExportReport], None] | None = None,
) -> ExportReport:
    """Write every contract in HAPI (changed at or after ``since``, if given) to ``out``.

    When HAPI fails, ``stopped`` of the report says why; what was written stays written.
    """
    criteria = [("identifier", f"{urls.ID_CONTRACT}|")]
    if since is not None:
        criteria.append(("_lastUpdated", f"ge{instant(since)}"))
    report = ExportReport()
    started = time.perf_counter()
    try:
        counted = await hapi.search("CarePlan", [*criteria, ("_summary", "count")])
        report.total = counted.total
        offset = 0
        while True:
            page = await hapi.search(
                "CarePlan",
                [
                    *criteria,
                    ("_sort", "_pid"),
                    ("_count", str(page_size)),
                    ("_offset", str(offset)),
                    *READ_PARAMS,
                ],
                max_pages=1,
            )
            careplans = page.matches()
            bundle = page.as_bundle()
            for contract_id in contract_ids(careplans):
                contract = await _read(hapi, bundle, contract_id)
                if isinstance(contract, Unreadable):
                    report.unreadable.append(contract)
                else:
                    out.write(contract_line(contract))
                    report.exported += 1
            report.seconds = time.perf_counter() - started
            if on_progress is not None:
                on_progress(report)
            if len(careplans) < page_size:
                break
            offset += page_size
    except HapiError as exc:
        report.stopped = str(exc)
    report.seconds = time.perf_counter() - started
    return report


async def _read(hapi: HapiClient, page: Resource, contract_id: str) -> Contract | Unreadable:
    try:
        return contract_from_bundle(page, contract_id)
    except UnreadableContractError:
        pass
    params = [("identifier", f"{urls.ID_CONTRACT}|{contract_id}"), *READ_PARAMS]
    alone = await hapi.search("CarePlan", params)
    try:
        return contract_from_bundle(alone.as_bundle(), contract_id)
    except UnreadableContractError as exc:
        return Unreadable(contract_id, str(exc))


def contract_ids(careplans: list[Resource]) -> list[str]:
    """The contract ids of ``careplans``, in their order."""
    return [
        str(identifier["value"])
        for careplan in careplans
        for identifier in careplan.get("identifier", [])
        if identifier.get("system") == urls.ID_CONTRACT
    ]
