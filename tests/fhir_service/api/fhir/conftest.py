"""The service each test module of the FHIR endpoint talks to, on the real HAPI: its own app in
process (``service``), or its own ``fhir-service serve`` process for clients that speak HTTP
(``base_url``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.auth import TestIssuer
from tests.service_app import ready_app
from tests.service_process import running_service


@pytest.fixture(scope="module")
def service(
    request: pytest.FixtureRequest,
    conformance_loaded: str,
    tmp_path_factory: pytest.TempPathFactory,
    issuer: TestIssuer,
) -> Iterator[TestClient]:
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with ready_app(conformance_loaded, workdir, issuer) as client:
        yield client


@pytest.fixture(scope="module")
def base_url(
    request: pytest.FixtureRequest,
    conformance_loaded: str,
    tmp_path_factory: pytest.TempPathFactory,
    issuer: TestIssuer,
) -> Iterator[str]:
    """The base URL of a service process of the module's own, as outside clients reach it."""
    directory = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    environment = {
        **issuer.env(),
        "HAPI_URL": conformance_loaded,
        "DATABASE_URL": f"sqlite:///{directory / 'service.db'}",
    }
    with running_service(environment, directory / "service.log") as url:
        yield url
