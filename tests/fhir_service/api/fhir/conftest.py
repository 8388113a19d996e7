"""The service each test module of the FHIR endpoint talks to: its own app, on the real HAPI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.auth import TestIssuer
from tests.service_app import ready_app


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
