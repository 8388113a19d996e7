"""``fhir-service import`` and ``fhir-service export``: contracts in bulk, one per NDJSON line.

``import`` prints its summary on stdout and exits 0 when every contract was imported or was
present already, 1 when some lines were rejected (each listed with its line number and reason),
and 2 when HAPI failed and the import stopped; running the same command again then resumes after
the last batch committed. ``export`` writes contracts to its output (stdout unless ``--output``)
and its summary to stderr; it exits 0, 1 when some stored contracts could not be read back, or 2
when HAPI failed (an ``--output`` file is then not written). Both draw a progress bar on stderr
when it is a terminal.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO, TypeVar

from fhir_service.fhir import HapiClient
from fhir_service.mapping.tables import Language
from fhir_service.metrics import Metrics
from fhir_service.sync.bulk import BulkImporter, ExportReport, ImportReport, export_contracts
from fhir_service.sync.bulk.state import state_path_for

__all__ = ["export_file", "import_file"]

_T = TypeVar("_T")
_BAR_WIDTH = 30
_REDRAW_SECONDS = 0.1


def import_file(
    path: Path,
    *,
    hapi_url: str,
    timeout: float,
    language: Language,
    batch_size: int,
    concurrency: int,
    state_path: Path | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Import the contracts in ``path``; print the summary; 0, 1 (rejections) or 2 (stopped)."""
    if not path.is_file():
        print(f"error: cannot read {path}: no such file", file=err)
        return 2
    bar = _ProgressBar(err)

    def progress(report: ImportReport) -> None:
        bar.show(
            report.lines_done,
            report.total_lines,
            f"lines  imported {report.imported}, present {report.present}, "
            f"rejected {len(report.rejected)}  {report.rate:.1f}/s",
        )

    def importer(hapi: HapiClient) -> Awaitable[ImportReport]:
        bulk = BulkImporter(hapi, language=language, batch_size=batch_size, concurrency=concurrency)
        return bulk.run(path, state_path=state_path, on_progress=progress)

    report = _with_client(hapi_url, timeout, importer)
    bar.close()
    resumed = f" (resumed after line {report.resumed_after})" if report.resumed_after else ""
    print(
        f"read {report.read} contracts from {report.lines_done} lines of {path}{resumed}", file=out
    )
    print(
        f"imported {report.imported}, already present {report.present}, "
        f"rejected {len(report.rejected)}",
        file=out,
    )
    for rejection in report.rejected:
        print(f"  line {rejection.line}: {rejection.reason}", file=out)
    print(f"time {report.seconds:.1f} s, {report.rate:.1f} contracts/s", file=out)
    if report.stopped is not None:
        where = state_path if state_path is not None else state_path_for(path)
        print(
            f"error: the import stopped after line {report.lines_done} of "
            f"{report.total_lines}: {report.stopped}\n"
            f"run the same command again to continue (progress is kept in {where})",
            file=err,
        )
        return 2
    return 1 if report.rejected else 0


def export_file(
    output: Path | None,
    *,
    hapi_url: str,
    timeout: float,
    page_size: int,
    since: datetime | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Export every contract to ``output`` (or ``out``); 0, 1 (unreadable ones) or 2 (stopped)."""
    bar = _ProgressBar(err)

    def progress(report: ExportReport) -> None:
        bar.show(report.exported, report.total, f"contracts  {report.rate:.1f}/s")

    def exporter(target: TextIO) -> Callable[[HapiClient], Awaitable[ExportReport]]:
        return lambda hapi: export_contracts(
            hapi, target, page_size=page_size, since=since, on_progress=progress
        )

    if output is None:
        report = _with_client(hapi_url, timeout, exporter(out))
        out.flush()
    else:
        # Written aside and moved into place whole, so a stopped export leaves no half file.
        partial = output.with_name(f".{output.name}.partial")
        with partial.open("w", encoding="utf-8") as file:
            report = _with_client(hapi_url, timeout, exporter(file))
        if report.stopped is None:
            partial.replace(output)
        else:
            partial.unlink()
    bar.close()
    where = f" to {output}" if output is not None else ""
    print(
        f"exported {report.exported} contracts{where} in {report.seconds:.1f} s, "
        f"{report.rate:.1f} contracts/s",
        file=err,
    )
    for unreadable in report.unreadable:
        print(f"  not exported: {unreadable.contract_id}: {unreadable.reason}", file=err)
    if report.stopped is not None:
        print(f"error: the export stopped: {report.stopped}", file=err)
        return 2
    return 1 if report.unreadable else 0


def _with_client(hapi_url: str, timeout: float, work: Callable[[HapiClient], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        hapi = HapiClient(hapi_url, Metrics(), timeout=timeout)
        try:
            return await work(hapi)
        finally:
            await hapi.aclose()

    return asyncio.run(run())


class _ProgressBar:
    """One line redrawn in place on a terminal; nothing when the stream is a file or a pipe."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.drawn = False
        self.last = 0.0

    def show(self, done: int, total: int | None, detail: str) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < _REDRAW_SECONDS and done != total):
            return
        self.last, self.drawn = now, True
        fraction = min(done / total, 1.0) if total else 0.0
        filled = int(fraction * _BAR_WIDTH)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        of = f"/{total}" if total is not None else ""
        # \x1b[K clears what a longer previous line left behind.
        self.stream.write(f"\r[{bar}] {fraction:4.0%} {done}{of} {detail}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
