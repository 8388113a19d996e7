"""Bulk import speed: contracts per second through the bulk importer, against a naive baseline.

    .venv/bin/python -m bench.bulk [--contracts 2000] [--baseline-contracts 500]
                                   [--batch-size 25] [--concurrency 2] [--rounds 10]

Contracts are the four example contracts, each copy with an id and a patient of its own; the
professionals and organizations are shared by all, as they would be in a region's data. In the
same run, against the same HAPI:

- bulk: ``BulkImporter`` reading an NDJSON file (look-up, then one transaction per batch);
- baseline: every resource of every contract as its own request, one after the other: a
  conditional create (``If-None-Exist``) per resource in Bundle order, with references rewritten
  to the ids HAPI returned for the resources before it.

The two take turns in ``--rounds`` rounds, so a change in the load on the machine hits both
alike. The baseline needs about 23 requests per contract, so by default it runs on 500 of the
contracts (the output says so); ``--baseline-contracts`` chooses how many. Target: bulk at
least 5x the baseline's contracts/s. Uses ``FHIR_BASE_URL`` when set, otherwise starts the
local HAPI (in memory) for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.support import hapi_base_url
from fhir_service.contract import Contract, Identifier, IdentifierKind, Name, Patient
from fhir_service.fhir import HapiClient
from fhir_service.mapping.to_fhir import contract_to_bundle
from fhir_service.metrics import Metrics
from fhir_service.sync.bulk import BulkImporter, contract_line

EXAMPLES = Path(__file__).parents[1] / "profiles" / "examples" / "contracts"
TARGET = 5.0
WARM_UP = 20


def generated(count: int, run: str, first: int = 0) -> list[Contract]:
    """``count`` copies of the examples in turn, each with its own id and patient."""
    examples = [
        Contract.model_validate_json(path.read_text(encoding="utf-8"))
        for path in sorted(EXAMPLES.glob("*.json"))
    ]
    # A random day per run keeps the patients of repeated runs against one HAPI apart.
    day_zero = date(1930, 1, 1) + timedelta(days=random.randrange(20_000))
    contracts = []
    for n in range(first, first + count):
        born = day_zero + timedelta(days=n // 900)
        patient = Patient(
            identifier=Identifier(
                kind=IdentifierKind.PERSONNUMMER, value=_personnummer(born, 100 + n % 900)
            ),
            name=Name(family="Benchsson", given=(f"Nr{n}",)),
        )
        example = examples[n % len(examples)]
        contracts.append(example.model_copy(update={"id": f"{run}-{n}", "patient": patient}))
    return contracts


def _personnummer(born: date, serial: int) -> str:
    body = f"{born:%Y%m%d}{serial:03d}"
    for check in "0123456789":
        products = [int(d) * (2 - i % 2) for i, d in enumerate(body[2:] + check)]
        if sum(p // 10 + p % 10 for p in products) % 10 == 0:
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


@dataclass
class Tally:
    """Time spent and work done by one side."""

    contracts: int = 0
    requests: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Contracts per second."""
        return self.contracts / self.seconds if self.seconds else 0.0

    def add(self, other: Tally) -> None:
        """Count ``other`` in."""
        self.contracts += other.contracts
        self.requests += other.requests
        self.seconds += other.seconds


async def bulk(
    hapi: HapiClient, contracts: list[Contract], folder: Path, batch_size: int, concurrency: int
) -> Tally:
    """Import ``contracts`` through the bulk importer; fail loudly unless all went in."""
    path = folder / f"{contracts[0].id}.ndjson"
    path.write_text("".join(contract_line(c) for c in contracts), encoding="utf-8")
    importer = BulkImporter(hapi, batch_size=batch_size, concurrency=concurrency)
    started = time.perf_counter()
    report = await importer.run(path)
    seconds = time.perf_counter() - started
    if report.imported != len(contracts) or report.stopped:
        raise RuntimeError(f"bulk import fell short: {report}")
    return Tally(len(contracts), 0, seconds)


async def one_by_one(hapi: HapiClient, contracts: list[Contract]) -> Tally:
    """Store ``contracts`` one resource per request, as a naive client would."""
    tally = Tally()
    started = time.perf_counter()
    for contract in contracts:
        stored: dict[str, str] = {}
        for entry in contract_to_bundle(contract, new=True)["entry"]:
            resource = _rewritten(entry["resource"], stored)
            created = await hapi.create(resource, if_none_exist=entry["request"]["ifNoneExist"])
            stored[entry["fullUrl"]] = f"{resource['resourceType']}/{created['id']}"
            tally.requests += 1
        tally.contracts += 1
    tally.seconds = time.perf_counter() - started
    return tally


def _rewritten(value: Any, stored: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: stored.get(v, v)
            if isinstance(v, str) and k == "reference"
            else _rewritten(v, stored)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewritten(v, stored) for v in value]
    return value


def _slices(total: int, rounds: int) -> list[slice]:
    bounds = [total * r // rounds for r in range(rounds + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


async def measure(base_url: str, args: argparse.Namespace) -> bool:
    """Run both sides in turns; print the numbers; True when the target is met."""
    run = f"bench-bulk-{random.randrange(16**8):08x}"
    ours = generated(args.contracts, f"{run}-b")
    theirs = generated(args.baseline_contracts, f"{run}-n", first=args.contracts)
    hapi = HapiClient(base_url, Metrics(), timeout=120)
    with tempfile.TemporaryDirectory() as folder:
        # Both sides find the shared records and a warm HAPI from here on.
        await bulk(hapi, generated(WARM_UP, f"{run}-wb"), Path(folder), 10, 1)
        await one_by_one(hapi, generated(WARM_UP, f"{run}-wn"))
        fast, slow = Tally(), Tally()
        turns = zip(_slices(len(ours), args.rounds), _slices(len(theirs), args.rounds), strict=True)
        for number, (mine, naive) in enumerate(turns, start=1):
            fast.add(await bulk(hapi, ours[mine], Path(folder), args.batch_size, args.concurrency))
            slow.add(await one_by_one(hapi, theirs[naive]))
            print(
                f"  round {number}/{args.rounds}: bulk {fast.rate:.1f}/s, "
                f"baseline {slow.rate:.1f}/s so far",
                flush=True,
            )
    await hapi.aclose()
    ratio = fast.rate / slow.rate
    print(f"HAPI {base_url}, {args.rounds} rounds, bulk and baseline taking turns")
    print(
        f"bulk:     {fast.contracts} contracts in {fast.seconds:.1f} s = "
        f"{fast.rate:.1f} contracts/s (batches of {args.batch_size}, "
        f"{args.concurrency} in flight)"
    )
    print(
        f"baseline: {slow.contracts} contracts in {slow.seconds:.1f} s = "
        f"{slow.rate:.1f} contracts/s ({slow.requests} requests, "
        f"{slow.requests / slow.seconds:.1f} requests/s, one per resource)"
    )
    if slow.contracts < fast.contracts:
        print(
            f"note: the baseline ran on {slow.contracts} of the {fast.contracts} contracts "
            "(--baseline-contracts); both rates are per contract"
        )
    met = ratio >= TARGET
    print(f"ratio: {ratio:.1f}x (target >= {TARGET:.0f}x: {'met' if met else 'NOT met'})")
    return met


def main() -> None:
    """Parse the options, run the measurement against a HAPI."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contracts", type=int, default=2000)
    parser.add_argument("--baseline-contracts", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if min(args.contracts, args.baseline_contracts) < args.rounds:
        parser.error("every round needs a contract of each side: raise the counts")
    with hapi_base_url() as base_url:
        asyncio.run(measure(base_url, args))


if __name__ == "__main__":
    main()
