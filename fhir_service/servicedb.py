"""The service's own database (idempotency keys, webhooks, outbox; nothing clinical).

SQLite file by default, PostgreSQL by URL. This module only makes the engine and checks it answers;
the tables and their migrations belong to the features that own them.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, make_url, text

__all__ = ["make_engine", "ping"]


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for a SQLite file, its directory is created first."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, pool_pre_ping=True)


def ping(engine: Engine) -> None:
    """Run ``SELECT 1``; raises SQLAlchemy's error when the database does not answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
