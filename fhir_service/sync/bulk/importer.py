"""Bulk import: contracts from an NDJSON file into HAPI, many to a transaction, resumably.

Each line holds one contract in the JSON form of :class:`Contract`. Lines are checked as the
mapping command checks a file (JSON, the model, known codes); a bad line is rejected with its
number and the reason, and the import goes on. Good contracts are collected into batches; a batch
is first looked up (contracts whose id HAPI holds already are *present* and are not sent again),
then written as one transaction Bundle: every contract mapped with ``new=True`` (conditional
creates throughout) and merged so that each shared record is written once.

If HAPI refuses a batch (400, 409 after retries, 412, 413, 422), the batch is halved until the
contracts HAPI refuses are alone; those are rejected with HAPI's diagnostics and the rest go in.
Anything else (HAPI unreachable after the client's retries, 5xx, 401/403) stops the import.

Up to ``concurrency`` batches are in flight; they are committed in input order, and the number
of lines committed is saved (:mod:`.state`) at most every second and whenever the import stops,
so a re-run resumes after the last committed batch. A batch that reached HAPI but was not
committed is sent again on resume; its conditional creates make that harmless.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_service.contract import Contract
from fhir_service.fhir import ConflictError, HapiClient, HapiError, HapiRequestError
from fhir_service.mapping import urls
from fhir_service.mapping.tables import Language
from fhir_service.mapping.to_fhir import contract_to_bundle
from fhir_service.sync.bulk.exporter import contract_ids
from fhir_service.sync.bulk.lines import read_line
from fhir_service.sync.bulk.state import ImportState, Rejection, fingerprint, state_path_for

__all__ = ["BulkImporter", "ImportReport", "merge_transactions"]

Resource = dict[str, Any]

# Statuses with which HAPI refuses what was sent (and not, say, who sent it).
_REFUSED = frozenset({400, 409, 412, 413, 422})
# Contract ids per existence search: keeps the query string well under Tomcat's 8 KiB.
_IDS_PER_SEARCH = 20
# A 409 on conditional creates means another writer created one of the records just now; the
# repeat finds it.
_CONFLICT_ATTEMPTS = 3
_SAVE_SECONDS = 1.0


@dataclass
class ImportReport:
    """Where an import stands, and finally what it came to.

    ``lines_done``, ``read``, ``imported``, ``present`` and ``rejected`` include the lines an
    earlier run committed (up to ``resumed_after``); ``handled`` (contracts read) and ``seconds``
    are this run's. A contract counts as *present* when HAPI held its id before its batch was
    sent; an import never changes a stored contract.
    """

    total_lines: int
    lines_done: int = 0
    read: int = 0
    imported: int = 0
    present: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    resumed_after: int = 0
    handled: int = 0
    seconds: float = 0.0
    stopped: str | None = None

    @property
    def rate(self) -> float:
        """Contracts handled per second by this run."""
        return self.handled / self.seconds if self.seconds > 0 else 0.0

    def _state(self, sha256: str) -> ImportState:
        return ImportState(
            sha256, self.lines_done, self.read, self.imported, self.present, list(self.rejected)
        )

    def _commit(self, outcome: _Outcome) -> None:
        self.lines_done = outcome.last_line
        self.read += outcome.read
        self.handled += outcome.read
        self.imported += outcome.imported
        self.present += outcome.present
        self.rejected += sorted(outcome.rejected, key=lambda r: r.line)


@dataclass
class _Item:
    line: int
    contract: Contract
    bundle: Resource


@dataclass
class _Outcome:
    last_line: int = 0
    read: int = 0
    imported: int = 0
    present: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class _Batch:
    items: list[_Item] = field(default_factory=list)
    outcome: _Outcome = field(default_factory=_Outcome)


class BulkImporter:
    """Imports NDJSON files of contracts into one HAPI."""

    def __init__(
        self,
        hapi: HapiClient,
        *,
        language: Language = "sv",
        batch_size: int = 25,
        concurrency: int = 2,
    ) -> None:
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        self.hapi = hapi
        self.language = language
        self.batch_size = batch_size
        self.concurrency = concurrency

    async def run(
        self,
        path: Path,
        *,
        state_path: Path | None = None,
        on_progress: Callable[[ImportReport], None] | None = None,
    ) -> ImportReport:
        """Import the file at ``path``, resuming from the progress saved at ``state_path``.

        The progress file (by default next to the input) is removed once the whole file is
        done, so importing the same file again reads it all again, and finds it present.
        When HAPI fails, ``stopped`` of the report says why, and the progress file keeps the
        lines committed; so it does when the import is cancelled (Ctrl-C).
        """
        sha256, total_lines = fingerprint(path)
        state_path = state_path if state_path is not None else state_path_for(path)
        saved = ImportState.load(state_path, sha256) or ImportState(sha256)
        report = ImportReport(
            total_lines,
            lines_done=saved.lines_done,
            read=saved.read,
            imported=saved.imported,
            present=saved.present,
            rejected=saved.rejected,
            resumed_after=saved.lines_done,
        )
        started = last_saved = time.perf_counter()
        pending: deque[tuple[_Outcome, asyncio.Task[None]]] = deque()

        def save(*, now: bool) -> None:
            nonlocal last_saved
            # Saving at most every second bounds the cost for inputs with very many rejected
            # lines; what a crash loses is re-sent on resume, which writes nothing twice.
            due = now or time.perf_counter() - last_saved >= _SAVE_SECONDS
            if due and report.lines_done > saved.lines_done:
                report._state(sha256).save(state_path)
                last_saved = time.perf_counter()

        async def commit_oldest() -> None:
            outcome, task = pending.popleft()
            await task
            report._commit(outcome)
            save(now=False)
            report.seconds = time.perf_counter() - started
            if on_progress is not None:
                on_progress(report)

        finished = False
        try:
            for batch in self._batches(path, skip=saved.lines_done):
                pending.append((batch.outcome, asyncio.create_task(self._send(batch))))
                if len(pending) >= self.concurrency:
                    await commit_oldest()
            while pending:
                await commit_oldest()
            finished = True
        except HapiError as exc:
            report.stopped = str(exc)
        finally:
            for _, task in pending:
                task.cancel()
            await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
            if finished:
                state_path.unlink(missing_ok=True)
            else:
                save(now=True)
        report.seconds = time.perf_counter() - started
        return report

    def _batches(self, path: Path, skip: int) -> Iterator[_Batch]:
        first_line_of: dict[str, int] = {}
        batch = _Batch()
        with path.open("rb") as file:
            for number, raw in enumerate(file, start=1):
                if number <= skip:
                    continue
                batch.outcome.last_line = number
                if not raw.strip():
                    continue
                batch.outcome.read += 1
                parsed = read_line(raw)
                if isinstance(parsed, str):
                    batch.outcome.rejected.append(Rejection(number, parsed))
                    continue
                first = first_line_of.setdefault(parsed.id, number)
                if first != number:
                    reason = f"contract {parsed.id!r} appears again (first on line {first})"
                    batch.outcome.rejected.append(Rejection(number, reason))
                    continue
                bundle = contract_to_bundle(parsed, self.language, new=True)
                batch.items.append(_Item(number, parsed, bundle))
                if len(batch.items) == self.batch_size:
                    yield batch
                    batch = _Batch()
        if batch.outcome.last_line:
            yield batch

    async def _send(self, batch: _Batch) -> None:
        present = await self._existing([item.contract.id for item in batch.items])
        batch.outcome.present += sum(item.contract.id in present for item in batch.items)
        await self._write([i for i in batch.items if i.contract.id not in present], batch.outcome)

    async def _existing(self, wanted: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(wanted), _IDS_PER_SEARCH):
            chunk = wanted[start : start + _IDS_PER_SEARCH]
            params = [
                ("identifier", ",".join(f"{urls.ID_CONTRACT}|{c}" for c in chunk)),
                ("_elements", "identifier"),
                ("_count", str(len(chunk))),
            ]
            result = await self.hapi.search("CarePlan", params)
            found.update(contract_ids(result.matches()))
        return found

    async def _write(self, items: list[_Item], outcome: _Outcome) -> None:
        if not items:
            return
        try:
            response = await self._transaction(merge_transactions(i.bundle for i in items))
        except HapiRequestError as exc:
            if exc.status not in _REFUSED:
                raise
            if len(items) == 1:
                reason = f"HAPI refused contract {items[0].contract.id!r}: {exc}"
                outcome.rejected.append(Rejection(items[0].line, reason))
                return
            half = len(items) // 2
            await self._write(items[:half], outcome)
            await self._write(items[half:], outcome)
            return
        for status in _careplan_statuses(response, len(items)):
            if status.startswith("201"):
                outcome.imported += 1
            else:
                # Another writer stored it between our look-up and our write.
                outcome.present += 1

    async def _transaction(self, bundle: Resource) -> Resource:
        for attempt in range(1, _CONFLICT_ATTEMPTS):
            try:
                return await self.hapi.transaction(bundle, idempotent=True)
            except ConflictError:
                await asyncio.sleep(self.hapi.retry.delay(attempt))
        return await self.hapi.transaction(bundle, idempotent=True)


def merge_transactions(bundles: Iterable[Resource]) -> Resource:
    """One transaction Bundle that writes what all ``bundles`` write, each record once.

    Entries share a ``fullUrl`` exactly when they write the same record (it is derived from the
    record's identifier), and all of them are conditional creates, so the first is kept. HAPI
    would merge such entries itself, but then answers with fewer entries than it was sent.

    >>> entry = {"fullUrl": "urn:uuid:1", "request": {"method": "POST", "url": "Patient"}}
    >>> len(merge_transactions([{"entry": [entry]}, {"entry": [entry]}])["entry"])
    1
    """
    entries: dict[str, Resource] = {}
    for bundle in bundles:
        for entry in bundle["entry"]:
            entries.setdefault(entry["fullUrl"], entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries.values())}


def _careplan_statuses(response: Resource, expected: int) -> list[str]:
    # Each contract has one CarePlan entry, none merged with another; HAPI answers in request
    # order, so the n-th CarePlan answer is the n-th contract's.
    statuses = [
        str(entry["response"]["status"])
        for entry in response.get("entry", [])
        if str(entry.get("response", {}).get("location", "")).startswith("CarePlan/")
    ]
    if len(statuses) != expected:
        raise ValueError(f"HAPI answered for {len(statuses)} CarePlans, not {expected}")
    return statuses
