"""The JSON facade's tests of a party's acts start from ``story``: an agreed contract of a
patient of its own (`tests.fhir_service.api.parties.Story`) on a service of the test's own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_service.api import create_app
from fhir_service.settings import Settings
from tests.auth import TestIssuer
from tests.fhir_service.api.parties import Story


@pytest.fixture
def story(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[Story]:
    settings = Settings(
        hapi_url=conformance_loaded,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        **issuer.settings(),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield Story(client, issuer)
