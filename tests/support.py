"""Helpers shared by tests and benchmarks: free ports and test data files."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from string import Template
from typing import Any

__all__ = ["DATA_DIR", "HAPI_START_TIMEOUT", "free_port", "load_data"]

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
