"""Session-wide fixtures: one real HAPI FHIR server for the whole run, and test data files.

``FHIR_BASE_URL`` points the tests at a HAPI that is already running; otherwise the session
builds and starts the launcher under ``hapi/`` on a free port with an in-memory database, and
stops it at the end. Tests never restart it: each isolates its data with unique identifiers.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from string import Template
from typing import Any

import httpx
import pytest

from fhir_service.local_hapi import LocalHapi

DATA_DIR = Path(__file__).parent / "data"
HAPI_START_TIMEOUT = 300.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def load_data(name: str, **values: str) -> Any:
    """A JSON file under tests/data with ``${name}`` placeholders filled in."""
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    return json.loads(Template(text).substitute(values))


@pytest.fixture(scope="session")
def hapi_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of the real HAPI FHIR server the tests run against."""
    configured = os.environ.get("FHIR_BASE_URL")
    if configured:
        yield configured.rstrip("/")
        return
    server = LocalHapi(port=free_port(), data_dir=None)
    log_path = tmp_path_factory.mktemp("hapi") / "hapi.log"
    with log_path.open("ab") as log:
        server.start(log=log)
    try:
        server.wait_until_ready(HAPI_START_TIMEOUT, log_path)
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture
def fhir(hapi_base_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client on HAPI's base URL speaking FHIR JSON."""
    with httpx.Client(
        base_url=hapi_base_url,
        headers={"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"},
        timeout=60.0,
    ) as client:
        yield client


@pytest.fixture
def system() -> str:
    """An identifier system no other test uses: the way tests keep their data apart."""
    return f"urn:uuid:{uuid.uuid4()}"
