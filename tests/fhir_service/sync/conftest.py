"""Fixtures of the sync tests: the service DB on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fhir_service import servicedb
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
