"""A real PostgreSQL server for the tests that need one.

``TEST_POSTGRES_URL`` names one that is running already. Otherwise Debian's ``postgresql`` is
installed when missing and its cluster started, and a login role for the tests is made: the same
steps ``.ci/run`` takes, so a fresh machine needs nothing by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
from sqlalchemy import make_url

__all__ = ["fresh_database", "server_url"]

_ROLE = "fhir_test"
_PG_ROOT = Path("/usr/lib/postgresql")


@cache
def server_url() -> str:
    """A SQLAlchemy URL of the server's ``postgres`` database, as a role that may create DBs."""
    configured = os.environ.get("TEST_POSTGRES_URL")
    if configured:
        return configured
    if shutil.which("pg_ctlcluster") is None or not _PG_ROOT.exists():
        _run(["apt-get", "update", "-qq"])
        _run(
            ["apt-get", "install", "-y", "-qq", "postgresql"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    version = max((p.name for p in _PG_ROOT.iterdir()), key=int)
    if _cluster(version) is None:
        _run(["pg_createcluster", version, "main"])
    port, online = _cluster(version) or ("", False)
    if not online:
        _run(["pg_ctlcluster", version, "main", "start"])
    create_role = (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{_ROLE}') THEN "
        f"CREATE ROLE {_ROLE} LOGIN PASSWORD '{_ROLE}' CREATEDB; END IF; END $$;"
    )
    _run(["runuser", "-u", "postgres", "--", "psql", "-p", port, "-qc", create_role])
    return f"postgresql+psycopg://{_ROLE}:{_ROLE}@127.0.0.1:{port}/postgres"


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database for one test; dropped afterwards."""
    admin = make_url(server_url())
    name = f"fhir_test_{uuid.uuid4().hex[:12]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(conninfo, name)


def _drop(conninfo: str, name: str) -> None:
    """Drop database ``name``, ending its sessions. A session still starting (a killed or
    stopping HAPI's pool was opening it) has no role yet, and PostgreSQL refuses to end it as
    someone else's: that ends within moments, so the drop is tried again."""
    for attempt in range(20):
        try:
            with psycopg.connect(conninfo, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == 19:
                raise
            time.sleep(0.5)


def _cluster(version: str) -> tuple[str, bool] | None:
    """The port of the ``main`` cluster of ``version`` and whether it runs."""
    for line in _run(["pg_lsclusters", "--no-header"]).stdout.splitlines():
        fields = line.split()
        if fields[:2] == [version, "main"]:
            return fields[2], fields[3] == "online"
    return None


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result
