"""Session-wide fixtures: one real HAPI FHIR server for the whole run, and clients of it.

``FHIR_BASE_URL`` points the tests at a HAPI that is already running; otherwise the session
builds and starts the launcher under ``hapi/`` on a free port with an in-memory database, and
stops it at the end. Tests never restart it: each isolates its data with unique identifiers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import settings

from fhir_service.cli.local_hapi import LocalHapi
from fhir_service.sync.conformance import conformance_bundle
from tests import hapi_clients
from tests.auth import TestIssuer
from tests.service_app import ready_app
from tests.support import HAPI_START_TIMEOUT, free_port
from tests.time_types import seed_through_api

# In CI the generated examples are the same on every run, so a red build always reproduces;
# locally each run explores new ones.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def hapi_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the real HAPI FHIR server the tests run against."""
    configured = os.environ.get("FHIR_BASE_URL")
    if configured:
        yield configured.rstrip("/")
        return
    server = LocalHapi(port=free_port(), data_dir=None)
    log_path = tmp_path_factory.mktemp("hapi") / "hapi.log"
    with log_path.open("ab") as log:
        server.start(log=log)
    try:
        server.wait_until_ready(HAPI_START_TIMEOUT, log_path)
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def conformance_loaded(
    hapi_base_url: str, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """HAPI's base URL, once our profiles, code systems and value sets are loaded into it, and
    the seed's time types are defined through the service's JSON facade."""
    response = httpx.post(
        hapi_base_url,
        json=conformance_bundle(),
        headers={"Content-Type": "application/fhir+json"},
        timeout=120.0,
    )
    assert response.status_code == 200, response.text
    with ready_app(hapi_base_url, tmp_path_factory.mktemp("seed"), issuer) as service:
        seed_through_api(service, issuer)
    return hapi_base_url


@pytest.fixture
def fhir(conformance_loaded: str) -> Iterator[httpx.Client]:
    """A plain HTTP client on HAPI's base URL speaking FHIR JSON, our SearchParameters loaded."""
    with httpx.Client(
        base_url=conformance_loaded,
        headers={"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"},
        timeout=60.0,
    ) as client:
        yield client


@pytest.fixture(scope="session")
def hapi_clients_jar() -> Path:
    """HAPI FHIR's own Java clients (``tests/clients/hapi``) as one runnable jar, built once."""
    return hapi_clients.jar()


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> TestIssuer:
    """The tests' identity provider: services under test trust it, tests get tokens from it."""
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture
def system() -> str:
    """An identifier system no other test uses: the way tests keep their data apart."""
    return f"urn:uuid:{uuid.uuid4()}"
