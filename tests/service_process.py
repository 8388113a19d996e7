"""The service as a real process (``fhir-service serve``), for tests that stop and start it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

__all__ = ["running_service"]

READY_TIMEOUT = 120.0


@contextmanager
def running_service(settings: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``fhir-service serve`` with ``FHIR_SERVICE_*`` ``settings``; yields its base URL.

    The service is stopped with SIGTERM at the end of the block, as an orchestrator stops it.
    """
    port = settings.get("PORT") or str(free_port())
    env = {**os.environ, **{f"FHIR_SERVICE_{k}": v for k, v in settings.items()}}
    env["FHIR_SERVICE_PORT"] = port
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fhir_service", "serve"], stdout=log, stderr=log, env=env
        )
    try:
        _wait_for_ready(base_url, process, log_path)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"/ready never answered 200:\n{log_path.read_text()[-4000:]}")
