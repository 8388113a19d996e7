"""The service as an in-process app for API tests: real HAPI, own SQLite file, test tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fhir_service.api import create_app
from fhir_service.settings import Settings
from tests.auth import TestIssuer

__all__ = ["ready_app"]


@contextmanager
def ready_app(
    hapi_url: str, directory: Path, issuer: TestIssuer, **settings: Any
) -> Iterator[TestClient]:
    """A client of the app trusting ``issuer``'s tokens, once ``/ready`` answers 200."""
    configured = Settings(
        hapi_url=hapi_url,
        database_url=f"sqlite:///{directory / 'service.db'}",
        **issuer.settings(),
        **settings,
    )
    with TestClient(create_app(configured), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/ready").text
            time.sleep(0.2)
        yield client
