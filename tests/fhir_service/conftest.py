"""Shared fixtures: the service DB on SQLite and on PostgreSQL, and a client of the real HAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fhir_service import servicedb
from fhir_service.fhir import HapiClient
from fhir_service.metrics import Metrics
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated service DB, once as a SQLite file and once as a PostgreSQL database."""
    if request.param == "sqlite":
        engine = servicedb.make_engine(f"sqlite:///{tmp_path / 'service.db'}")
        servicedb.migrate(engine)
        yield engine
        engine.dispose()
        return
    with fresh_database() as url:
        engine = servicedb.make_engine(url)
        servicedb.migrate(engine)
        yield engine
        engine.dispose()


@pytest.fixture
def metrics() -> Metrics:
    """The metrics the ``hapi`` client counts its requests in."""
    return Metrics()


@pytest.fixture
async def hapi(conformance_loaded: str, metrics: Metrics) -> AsyncIterator[HapiClient]:
    """A client of the real HAPI, with our profiles and SearchParameters loaded."""
    client = HapiClient(conformance_loaded, metrics, timeout=60)
    yield client
    await client.aclose()
