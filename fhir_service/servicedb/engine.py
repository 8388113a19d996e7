"""The service's own database: idempotency keys, webhooks, the delivery and audit outboxes.

HAPI is the record; what clinical data is here is short-lived: an idempotency key keeps the
answer it replays (a contract) for its 24 hours, and the audit outbox who touched which
patient's contract until HAPI has the AuditEvent. Housekeeping deletes both when done.

SQLite file by default, PostgreSQL by URL. This module makes the engine, checks it answers and
migrates it. The tables live in ``sync/tables.py`` and change through the Alembic migrations in
``migrations/versions/`` (one file per change, numbered), which :func:`migrate` applies at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.util import asbool

__all__ = ["make_engine", "migrate", "ping"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for a SQLite file named by path, its directory is created first."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    # A server can drop a pooled connection, so each is pinged before use; a SQLite file cannot,
    # and the ping would only add a statement to every audit record's insert.
    engine = create_engine(url, pool_pre_ping=not sqlite)
    if sqlite and parsed.database not in (None, "", ":memory:"):
        # A URI filename (``file:...?uri=true``) names a file that must be there already, and is
        # no path: made into one, it would create a ``file:`` folder where the process runs.
        # (``asbool``: SQLAlchemy's own reading of the option, which takes ``1`` and ``yes`` too.)
        if not asbool(parsed.query.get("uri", False)):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_file_settings)
    return engine


def _sqlite_file_settings(connection: Any, _record: Any) -> None:
    # Every request writes an audit record while background writers claim rows: with the
    # write-ahead log, readers and the one writer no longer block each other, and a busy
    # database is waited for instead of failing at once. Commits still sync (durable).
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def ping(engine: Engine) -> None:
    """Run ``SELECT 1``; raises SQLAlchemy's error when the database does not answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; a no-op when it is there already."""
    # Alembic is needed here only, and importing it announces its plugins: commands that never
    # migrate (bulk import and export, tokens) do not load it.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
