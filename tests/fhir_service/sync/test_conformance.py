"""Our conformance resources load into HAPI idempotently, and HAPI understands every one."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pytest_httpx import HTTPXMock

from fhir_service.fhir import HapiClient
from fhir_service.metrics import Metrics
from fhir_service.sync.conformance import (
    CONFORMANCE_DIRS,
    conformance_bundle,
    conformance_resources,
    load_until_done,
)

PROFILES = [r for r in conformance_resources() if r["resourceType"] == "StructureDefinition"]
# HAPI 8.8 cannot regenerate the snapshot of any Extension definition while validating it, even
# a minimal one. Instances are still checked against our extensions (codes, bindings, types):
# tests/fhir_service/mapping/test_validation.py proves that.
HAPI_EXTENSION_SNAPSHOT_BUG = "Unable to resolve package id hl7.fhir.r4.core#null"


def _errors(outcome: dict[str, object]) -> list[str]:
    issues = outcome["issue"]  # type: ignore[index]
    return [i.get("diagnostics", "") for i in issues if i["severity"] in ("error", "fatal")]  # type: ignore[union-attr]


def test_bundle_puts_every_file_under_its_canonical_url() -> None:
    files = [p for d in CONFORMANCE_DIRS for p in d.glob("*.json")]

    entries = conformance_bundle()["entry"]

    assert len(entries) == len(files) > 20
    for entry in entries:
        resource = entry["resource"]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}?url={resource['url']}",
        }
        assert "id" not in resource


def test_loading_again_changes_nothing(fhir: httpx.Client, conformance_loaded: str) -> None:
    before = {
        r["url"]: _version(fhir, r["resourceType"], r["url"]) for r in conformance_resources()
    }

    again = fhir.post("", json=conformance_bundle())

    assert again.status_code == 200, again.text
    assert {e["response"]["status"] for e in again.json()["entry"]} == {"200 OK"}
    after = {r["url"]: _version(fhir, r["resourceType"], r["url"]) for r in conformance_resources()}
    assert after == before


def _version(fhir: httpx.Client, resource_type: str, url: str) -> str:
    found = fhir.get(f"/{resource_type}", params={"url": url}).json()
    assert found["total"] == 1
    return str(found["entry"][0]["resource"]["meta"]["versionId"])


@pytest.mark.parametrize("resource", conformance_resources(), ids=lambda r: r["id"])
def test_each_conformance_resource_is_valid_fhir(
    fhir: httpx.Client, conformance_loaded: str, resource: dict[str, object]
) -> None:
    response = fhir.post(f"/{resource['resourceType']}/$validate", json=resource)

    assert response.status_code == 200, response.text
    errors = _errors(response.json())
    if resource.get("type") == "Extension":
        errors = [e for e in errors if HAPI_EXTENSION_SNAPSHOT_BUG not in e]
    assert errors == []


@pytest.mark.parametrize("profile", PROFILES, ids=lambda r: r["id"])
def test_every_differential_element_survives_snapshot_generation(
    fhir: httpx.Client, conformance_loaded: str, profile: dict[str, object]
) -> None:
    # Out-of-order differential elements are silently dropped from the snapshot, and with them
    # every rule they carry; this catches that.
    response = fhir.post("/StructureDefinition/$snapshot", json=profile)

    assert response.status_code == 200, response.text
    snapshot_ids = {e["id"] for e in response.json()["snapshot"]["element"]}
    differential_ids = {e["id"] for e in profile["differential"]["element"]}  # type: ignore[index]
    assert differential_ids <= snapshot_ids


async def test_loading_retries_until_hapi_takes_the_resources(httpx_mock: HTTPXMock) -> None:
    base = "http://hapi.test/fhir/"
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=base)
    httpx_mock.add_response(url=base, status_code=503, json={"issue": [{"diagnostics": "busy"}]})
    httpx_mock.add_response(
        url=base, json={"resourceType": "Bundle", "type": "transaction-response"}
    )
    # pytest-httpx answers in place of httpx's own transport.
    hapi = HapiClient(base.rstrip("/"), Metrics(), transport=httpx.AsyncHTTPTransport())
    loaded = asyncio.Event()

    await asyncio.wait_for(load_until_done(hapi, loaded, first_wait=0.01, max_wait=0.02), 10)
    await hapi.aclose()

    assert loaded.is_set()
    requests = httpx_mock.get_requests()
    assert len(requests) == 3
    assert all(json.loads(r.content) == conformance_bundle() for r in requests)
