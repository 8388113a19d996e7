"""The migrations build exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from fhir_service import servicedb
from fhir_service.servicedb.tables import Base


def test_the_migrated_schema_matches_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert differences == []
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_migrating_again_changes_nothing(engine: Engine) -> None:
    before = {t: inspect(engine).get_columns(t) for t in Base.metadata.tables}

    servicedb.migrate(engine)

    after = {t: inspect(engine).get_columns(t) for t in Base.metadata.tables}
    assert [c["name"] for c in after["deliveries"]] == [c["name"] for c in before["deliveries"]]
    assert len(after) == len(before) == 7
