"""The service as a real process (``fhir-service serve``), for tests that stop, kill, start it."""

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

__all__ = ["ServiceProcess", "running_service"]

READY_TIMEOUT = 120.0


class ServiceProcess:
    """``fhir-service serve`` with ``FHIR_SERVICE_*`` ``settings``, logging to ``log_path``.

    Started again after :meth:`kill` it keeps its port and settings: the same service, restarted.
    """

    def __init__(self, settings: dict[str, str], log_path: Path) -> None:
        self.port = settings.get("PORT") or str(free_port())
        self.env = {**os.environ, **{f"FHIR_SERVICE_{k}": v for k, v in settings.items()}}
        self.env["FHIR_SERVICE_PORT"] = self.port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until ``/ready`` answers 200."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "fhir_service", "serve"],
                stdout=log,
                stderr=log,
                env=self.env,
            )
        _wait_for_ready(self.base_url, self._process, self.log_path)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no cleanup, whatever it was doing."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it; SIGKILL if it does not go within a minute."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextmanager
def running_service(settings: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``fhir-service serve`` with ``FHIR_SERVICE_*`` ``settings``; yields its base URL.

    The service is stopped with SIGTERM at the end of the block, as an orchestrator stops it.
    """
    service = ServiceProcess(settings, log_path)
    try:
        service.start()
        yield service.base_url
    finally:
        service.stop()


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
