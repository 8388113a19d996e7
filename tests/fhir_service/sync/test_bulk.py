"""Bulk import and export against the real HAPI: exact counts, no duplicates, resumable."""

from __future__ import annotations

import asyncio
import doctest
import io
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from fhir_service.contract import Contract
from fhir_service.fhir import HapiClient, RetryPolicy
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.metrics import Metrics
from fhir_service.sync.bulk import (
    BulkImporter,
    ExportReport,
    ImportReport,
    contract_line,
    export_contracts,
)
from fhir_service.sync.bulk import importer as importer_module
from fhir_service.sync.bulk import lines as lines_module
from fhir_service.sync.bulk.state import state_path_for
from tests.strategies.contracts import contracts
from tests.support import DATA_DIR

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
SEARCH_CHUNK = 20


def _generated(count: int) -> list[Contract]:
    """``count`` contracts drawn from the strategy, with ids no other test uses."""
    drawn: list[Contract] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(contracts())
    def draw(contract: Contract) -> None:
        drawn.append(contract)

    draw()
    assert len(drawn) >= count
    run = uuid.uuid4().hex[:12]
    return [c.model_copy(update={"id": f"bulk-{run}-{i}"}) for i, c in enumerate(drawn[:count])]


def _knee_variants(count: int) -> list[Contract]:
    knee = Contract.model_validate_json((EXAMPLES / "knee-replacement.json").read_text("utf-8"))
    run = uuid.uuid4().hex[:12]
    return [knee.model_copy(update={"id": f"knee-{run}-{i}"}) for i in range(count)]


def _ndjson(path: Path, contracts: list[Contract]) -> Path:
    path.write_text("".join(contract_line(c) for c in contracts), encoding="utf-8")
    return path


def _mixed(tmp_path: Path) -> tuple[Path, str]:
    run = uuid.uuid4().hex[:12]
    template = Template((DATA_DIR / "bulk" / "mixed.ndjson").read_text(encoding="utf-8"))
    path = tmp_path / "mixed.ndjson"
    path.write_text(template.substitute(run=run), encoding="utf-8")
    return path, run


async def _count(hapi: HapiClient, resource_type: str, identifiers: list[str]) -> int:
    total = 0
    for start in range(0, len(identifiers), SEARCH_CHUNK):
        chunk = ",".join(identifiers[start : start + SEARCH_CHUNK])
        found = await hapi.search(resource_type, [("identifier", chunk), ("_summary", "count")])
        assert found.total is not None
        total += found.total
    return total


async def _careplans(hapi: HapiClient, contracts: list[Contract]) -> int:
    return await _count(hapi, "CarePlan", [f"{urls.ID_CONTRACT}|{c.id}" for c in contracts])


def _posts(metrics: Metrics) -> float:
    return sum(
        metrics.registry.get_sample_value(
            "fhir_service_hapi_requests_total", {"method": "POST", "outcome": outcome}
        )
        or 0.0
        for outcome in ("200", "400", "409", "412", "422")
    )


def _fresh_personnummer() -> str:
    # A valid number no other test is likely to use: a random date and serial, then Luhn.
    born = datetime(1900, 1, 1) + timedelta(days=random.randrange(200 * 365))
    body = f"{born:%Y%m%d}{random.randrange(1000):03d}"
    for check in "0123456789":
        digits = [int(d) for d in body[2:] + check]
        total = sum(sum(divmod(d * (2 - i % 2), 10)) for i, d in enumerate(digits))
        if total % 10 == 0:
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


def test_the_pure_helpers_behave_as_their_doctests_say() -> None:
    for module in (importer_module, lines_module):
        result = doctest.testmod(module)
        assert (result.failed, result.attempted > 0) == (0, True)


async def test_import_writes_each_contract_once_and_again_writes_nothing(
    hapi_base_url: str, tmp_path: Path
) -> None:
    contracts = _generated(24)
    path = _ndjson(tmp_path / "contracts.ndjson", contracts)
    metrics = Metrics()
    client = HapiClient(hapi_base_url, metrics, timeout=60)

    first = await BulkImporter(client, batch_size=5, concurrency=2).run(path)

    assert (first.read, first.imported, first.present, first.rejected) == (24, 24, 0, [])
    assert first.stopped is None
    assert not state_path_for(path).exists()
    assert await _careplans(client, contracts) == 24
    # Records shared between contracts were written once each.
    patients = {
        f"{system_for(c.patient.identifier.kind)}|{c.patient.identifier.value}" for c in contracts
    }
    people = {
        f"{system_for(p.identifier.kind)}|{p.identifier.value}"
        for c in contracts
        for p in c.all_professionals()
    }
    assert await _count(client, "Patient", sorted(patients)) == len(patients)
    assert await _count(client, "Practitioner", sorted(people)) == len(people)
    posts = _posts(metrics)

    again = await BulkImporter(client, batch_size=5).run(path)

    assert (again.read, again.imported, again.present, again.rejected) == (24, 0, 24, [])
    assert _posts(metrics) == posts, "a re-import sends no transaction at all"
    assert await _careplans(client, contracts) == 24
    await client.aclose()


async def test_bad_lines_are_rejected_with_reasons_and_the_rest_goes_in(
    hapi: HapiClient, tmp_path: Path
) -> None:
    path, run = _mixed(tmp_path)

    report = await BulkImporter(hapi, batch_size=2).run(path)

    assert (report.read, report.imported, report.present) == (8, 3, 0)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [2, 4, 6, 8, 9]
    assert reasons[2].startswith("malformed JSON at column")
    assert reasons[4].startswith("$.patient.identifier.value: ")
    assert "check digit" in reasons[4]
    assert reasons[6] == "$.activities[0].category: unknown activity-category code 'yoga'"
    assert reasons[8] == f"contract '{run}-walk' appears again (first on line 1)"
    assert reasons[9] == "$: must be a JSON object"
    stored = [f"{urls.ID_CONTRACT}|{run}-{name}" for name in ("walk", "stairs", "plain")]
    assert await _count(hapi, "CarePlan", stored) == 3
    refused = [f"{urls.ID_CONTRACT}|{run}-{name}" for name in ("broken", "bad-number", "yoga")]
    assert await _count(hapi, "CarePlan", refused) == 0


async def test_a_batch_hapi_refuses_is_halved_until_the_refused_contract_is_alone(
    hapi_base_url: str, hapi: HapiClient, tmp_path: Path
) -> None:
    contracts = _knee_variants(8)
    # Two Patients with one personnummer: HAPI refuses a conditional create that matches both.
    number = _fresh_personnummer()
    patient = contracts[5].patient
    twin = patient.model_copy(
        update={"identifier": patient.identifier.model_copy(update={"value": number})}
    )
    contracts[5] = contracts[5].model_copy(update={"patient": twin})
    duplicate = {
        "resourceType": "Patient",
        "identifier": [{"system": system_for(twin.identifier.kind), "value": number}],
    }
    for _ in range(2):
        await hapi.create(duplicate)
    path = _ndjson(tmp_path / "contracts.ndjson", contracts)
    metrics = Metrics()
    client = HapiClient(hapi_base_url, metrics, timeout=60)

    report = await BulkImporter(client, batch_size=8, concurrency=1).run(path)

    assert report.imported == 7
    assert [r.line for r in report.rejected] == [6]
    assert report.rejected[0].reason.startswith(
        f"HAPI refused contract '{contracts[5].id}': HAPI FHIR answered 412: "
    )
    assert "matched 2 resources" in report.rejected[0].reason
    # 8 refused -> 1-4 stored, 5-8 refused -> 5-6 refused, 7-8 stored -> 5 stored, 6 refused.
    assert _posts(metrics) == 7
    assert await _careplans(client, contracts) == 7
    await client.aclose()


class _HapiGoesDown(httpx.AsyncBaseTransport):
    """Passes ``transactions`` transactions; HAPI stores the next but its answer is lost, and
    from then on nothing connects."""

    def __init__(self, transactions: int) -> None:
        self.left = transactions
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.left < 0:
            raise httpx.ConnectError("connection refused", request=request)
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            self.left -= 1
            if self.left < 0:
                await response.aclose()
                raise httpx.ReadError("connection reset", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_import_stopped_by_a_failure_resumes_and_ends_with_each_contract_once(
    hapi_base_url: str, hapi: HapiClient, tmp_path: Path
) -> None:
    contracts = _knee_variants(20)
    path = _ndjson(tmp_path / "contracts.ndjson", contracts)
    state = tmp_path / "progress.json"
    failing = HapiClient(
        hapi_base_url,
        Metrics(),
        retry=RetryPolicy(attempts=2, base_delay=0.01),
        transport=_HapiGoesDown(transactions=2),
    )

    stopped = await BulkImporter(failing, batch_size=4, concurrency=1).run(path, state_path=state)
    await failing.aclose()

    assert stopped.stopped is not None
    assert "unavailable" in stopped.stopped
    assert (stopped.lines_done, stopped.imported) == (8, 8)
    assert state.exists()
    # The third batch reached HAPI although its answer never came back.
    assert await _careplans(hapi, contracts) == 12

    resumed = await BulkImporter(hapi, batch_size=4, concurrency=1).run(path, state_path=state)

    assert resumed.stopped is None
    assert resumed.resumed_after == 8
    assert (resumed.read, resumed.imported, resumed.present) == (20, 16, 4)
    assert resumed.handled == 12
    assert not state.exists()
    assert await _careplans(hapi, contracts) == 20


async def test_an_import_cancelled_midway_keeps_its_progress_and_resumes(
    hapi: HapiClient, tmp_path: Path
) -> None:
    contracts = _knee_variants(12)
    path = _ndjson(tmp_path / "contracts.ndjson", contracts)
    importer = BulkImporter(hapi, batch_size=3, concurrency=1)

    def interrupt(report: ImportReport) -> None:
        if report.lines_done == 6:
            running.cancel()  # as Ctrl-C cancels asyncio.run's task

    running = asyncio.create_task(importer.run(path, on_progress=interrupt))
    with pytest.raises(asyncio.CancelledError):
        await running

    saved = json.loads(state_path_for(path).read_text(encoding="utf-8"))
    assert (saved["lines_done"], saved["imported"]) == (6, 6)

    resumed = await importer.run(path)

    assert (resumed.resumed_after, resumed.imported, resumed.present) == (6, 12, 0)
    assert await _careplans(hapi, contracts) == 12


@pytest.mark.parametrize(
    "saved",
    [
        json.dumps(
            {
                "format": 1,
                "sha256": "0" * 64,
                "lines_done": 3,
                "read": 3,
                "imported": 3,
                "present": 0,
                "rejected": [],
            }
        ),
        '{"lines_done": 3',
    ],
    ids=["another input", "not a progress file"],
)
async def test_progress_that_is_not_this_inputs_is_ignored(
    hapi: HapiClient, tmp_path: Path, saved: str
) -> None:
    contracts = _knee_variants(3)
    path = _ndjson(tmp_path / "contracts.ndjson", contracts)
    state_path_for(path).write_text(saved, encoding="utf-8")

    report = await BulkImporter(hapi).run(path)

    assert (report.resumed_after, report.imported) == (0, 3)
    assert await _careplans(hapi, contracts) == 3
    assert not state_path_for(path).exists()


async def test_export_gives_back_what_was_imported_and_that_imports_as_present(
    hapi: HapiClient, tmp_path: Path
) -> None:
    contracts = _generated(10)
    since = datetime.now(UTC)
    path = _ndjson(tmp_path / "contracts.ndjson", contracts)
    await BulkImporter(hapi, batch_size=4).run(path)
    out = io.StringIO()
    progress: list[int] = []

    report = await export_contracts(
        hapi, out, page_size=4, since=since, on_progress=lambda r: progress.append(r.exported)
    )

    assert report.stopped is None
    assert report.unreadable == []
    ours = {c.id for c in contracts}
    lines = [line for line in out.getvalue().splitlines() if json.loads(line)["id"] in ours]
    assert all("version" not in json.loads(line) for line in lines)
    # Each contract is on one page only; concurrent batches make the order of creation vary.
    exported = [Contract.model_validate_json(line) for line in lines]
    assert sorted(exported, key=lambda c: c.id) == sorted(contracts, key=lambda c: c.id)
    assert len(progress) >= 3
    exported_path = tmp_path / "exported.ndjson"
    exported_path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")

    again = await BulkImporter(hapi).run(exported_path)

    assert (again.imported, again.present, again.rejected) == (0, 10, [])


async def test_a_stored_contract_that_does_not_read_back_is_reported_and_the_rest_exported(
    hapi: HapiClient, system: str, tmp_path: Path
) -> None:
    since = datetime.now(UTC)
    patient = await hapi.create(
        {"resourceType": "Patient", "identifier": [{"system": system, "value": "p"}]}
    )
    broken = f"broken-{uuid.uuid4().hex}"
    careplan = {
        "resourceType": "CarePlan",
        "identifier": [{"system": urls.ID_CONTRACT, "value": broken}],
        "status": "draft",
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient['id']}"},
    }
    await hapi.create(careplan)
    contracts = _knee_variants(2)
    await BulkImporter(hapi).run(_ndjson(tmp_path / "contracts.ndjson", contracts))
    out = io.StringIO()

    report: ExportReport = await export_contracts(hapi, out, since=since)

    assert [u.contract_id for u in report.unreadable] == [broken]
    # Said at the element, as POST /fhir would say it.
    assert "Bundle.entry[0].resource.author: must name the responsible clinician" in (
        report.unreadable[0].reason
    )
    exported = {json.loads(line)["id"] for line in out.getvalue().splitlines()}
    assert {c.id for c in contracts} <= exported
    assert broken not in exported


async def test_batches_in_flight_that_create_one_new_record_both_go_in(
    hapi_base_url: str, tmp_path: Path
) -> None:
    # All contracts share one new patient, and four one-contract batches race to create it:
    # HAPI answers the losers 409 (hapi/README.md), and their repeats find the winner's Patient.
    knee = _knee_variants(12)
    patient = knee[0].patient
    number = _fresh_personnummer()
    shared = patient.model_copy(
        update={"identifier": patient.identifier.model_copy(update={"value": number})}
    )
    contracts = [c.model_copy(update={"patient": shared}) for c in knee]
    path = _ndjson(tmp_path / "contracts.ndjson", contracts)
    metrics = Metrics()
    client = HapiClient(hapi_base_url, metrics, timeout=60)

    report = await BulkImporter(client, batch_size=1, concurrency=4).run(path)

    assert (report.imported, report.rejected) == (12, [])
    assert await _careplans(client, contracts) == 12
    system = system_for(shared.identifier.kind)
    assert await _count(client, "Patient", [f"{system}|{number}"]) == 1
    await client.aclose()
