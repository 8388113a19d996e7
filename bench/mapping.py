"""Mapping speed: contracts per second to Bundle JSON and back, against two baselines.

    .venv/bin/python -m bench.mapping [--repeat 50]

For a small contract (3 activities, 2 agreed times) and a large one (40 activities, 10 agreed
times), measured in the same run:

- ours: ``contract_to_bundle`` + ``json.dumps``, and ``json.loads`` + ``contract_from_bundle``;
- baseline (a): HAPI storing that same Bundle as a new contract (a fresh id each time);
- baseline (b): ``fhir.resources`` (R4B) validating and dumping that same Bundle once.

Target: mapping a large contract costs at most 10% of HAPI's time to store it. Uses
``FHIR_BASE_URL`` when set, otherwise starts the local HAPI (in memory) for the run.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from fhir.resources.R4B.bundle import Bundle

from bench.support import hapi_base_url, median_seconds
from fhir_service.contract import Activity, AgreedTime, Contract
from fhir_service.mapping.from_fhir import contract_from_bundle
from fhir_service.mapping.to_fhir import contract_to_bundle

EXAMPLE = (
    Path(__file__).parents[1] / "profiles" / "examples" / "contracts" / "knee-replacement.json"
)
TARGET = 0.10


def sized(activities: int, times: int) -> Contract:
    """The knee-replacement contract grown (or cut) to the given numbers of parts."""
    base = Contract.model_validate_json(EXAMPLE.read_text(encoding="utf-8"))
    template = base.activities
    grown = [
        Activity.model_validate(
            template[i % len(template)].model_dump()
            | {"key": f"activity-{i}", "description": f"Aktivitet {i}"}
        )
        for i in range(activities)
    ]
    booked = base.agreed_times[0]
    start = datetime(2027, 1, 4, 8, tzinfo=UTC)
    agreed = [
        AgreedTime.model_validate(
            booked.model_dump()
            | {
                "key": f"time-{i}",
                "start": start + timedelta(days=7 * i),
                "end": start + timedelta(days=7 * i, minutes=30),
            }
        )
        for i in range(times)
    ]
    return base.model_copy(update={"activities": tuple(grown), "agreed_times": tuple(agreed)})


def run(label: str, contract: Contract, hapi: httpx.Client, repeat: int) -> bool:
    """Measure one contract size; print the numbers; True when the target is met."""
    bundle = contract_to_bundle(contract)
    text = json.dumps(bundle, ensure_ascii=False)
    to_fhir = median_seconds(lambda: json.dumps(contract_to_bundle(contract)), repeat)
    back = median_seconds(lambda: contract_from_bundle(json.loads(text)), repeat)
    library = median_seconds(lambda: Bundle.model_validate(bundle).model_dump_json(), repeat)
    # Each store is a new contract (a fresh id), mapped beforehand so only HAPI is timed.
    stores = max(5, repeat // 5)
    run_id = f"bench-{datetime.now(UTC):%H%M%S%f}"
    fresh = iter(
        [
            json.dumps(contract_to_bundle(contract.model_copy(update={"id": f"{run_id}-{n}"})))
            for n in range(stores + 1)
        ]
    )

    def store() -> None:
        hapi.post("", content=next(fresh)).raise_for_status()

    hapi_store = median_seconds(store, stores)
    both = to_fhir + back
    print(f"{label}: {len(bundle['entry'])} entries, {len(text) / 1024:.0f} KiB")
    print(f"  ours: to FHIR {to_fhir * 1e3:.2f} ms, back {back * 1e3:.2f} ms")
    print(f"        {1 / both:,.0f} contracts/s both ways, {1 / to_fhir:,.0f}/s to FHIR")
    print(f"  (a) HAPI stores the Bundle in {hapi_store * 1e3:.1f} ms")
    print(f"      to FHIR / HAPI = {to_fhir / hapi_store:.1%}")
    print(f"      both ways / HAPI = {both / hapi_store:.1%}")
    print(f"  (b) fhir.resources validates and dumps it in {library * 1e3:.2f} ms")
    print(f"      to FHIR / fhir.resources = {to_fhir / library:.2f}x")
    return to_fhir / hapi_store <= TARGET


def main() -> None:
    """Run both sizes; say whether the large contract meets the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with (
        hapi_base_url() as base_url,
        httpx.Client(
            base_url=base_url, headers={"Content-Type": "application/fhir+json"}, timeout=120
        ) as hapi,
    ):
        run("small (3 activities, 2 times)", sized(3, 2), hapi, args.repeat)
        met = run("large (40 activities, 10 times)", sized(40, 10), hapi, args.repeat)
    verdict = "met" if met else "NOT met"
    print(f"target (large: to FHIR <= {TARGET:.0%} of HAPI's store time): {verdict}")


if __name__ == "__main__":
    main()
