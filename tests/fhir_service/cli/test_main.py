"""The command line against real processes: the local HAPI's lifecycle and the embedded default.

Each test starts HAPI itself (with an H2 file, as a user would), so these are the slow ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import HAPI_START_TIMEOUT, free_port, load_data

pytestmark = pytest.mark.usefixtures("hapi_base_url")  # the session has built the launcher


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_service", *args],
        capture_output=True,
        text=True,
        timeout=HAPI_START_TIMEOUT,
        env=env,
        check=False,
    )


@pytest.fixture
def hapi_dir(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, data_dir = free_port(), tmp_path / "hapi"
    yield port, data_dir
    _cli("hapi", "stop", "--port", str(port), "--data-dir", str(data_dir))


def test_hapi_start_status_stop_and_data_survives_a_restart(
    hapi_dir: tuple[int, Path], system: str
) -> None:
    port, data_dir = hapi_dir
    where = ["--port", str(port), "--data-dir", str(data_dir)]
    base = f"http://127.0.0.1:{port}/fhir"

    started = _cli("hapi", "start", *where)
    assert started.returncode == 0, started.stderr
    assert f"HAPI FHIR running at {base}" in started.stdout
    assert _cli("hapi", "status", *where).returncode == 0
    # On H2 the launcher rewrites HAPI's id lookup (tests/hapi/test_h2_id_lookup.py): wired in.
    log = (data_dir / "hapi.log").read_text()
    assert "lookups of client-assigned ids are rewritten" in log
    # Its filter of the subscription pipeline (tests/hapi/test_unwatched_changes.py): registered.
    assert "no active Subscription names are not queued" in log
    patient = load_data("hapi/patient.json", system=system, value="kept")
    created = httpx.post(f"{base}/Patient", json=patient, timeout=30)
    assert created.status_code == 201
    patient_id = created.json()["id"]

    stopped = _cli("hapi", "stop", *where)
    assert stopped.returncode == 0
    status = _cli("hapi", "status", *where)
    assert status.returncode == 3
    assert "does not answer" in status.stdout

    assert _cli("hapi", "start", *where).returncode == 0
    again = httpx.get(f"{base}/Patient/{patient_id}", timeout=30)
    assert again.status_code == 200
    assert again.json()["identifier"] == patient["identifier"]
    assert (data_dir / "h2").is_dir()


def test_stop_without_a_running_server_says_so(tmp_path: Path) -> None:
    result = _cli("hapi", "stop", "--data-dir", str(tmp_path))

    assert result.returncode == 1
    assert "no HAPI FHIR started from" in result.stdout


def test_serve_without_hapi_url_starts_the_local_hapi_and_stops_it_on_exit(
    tmp_path: Path,
) -> None:
    service_port, hapi_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVICE_")}
    env |= {
        "FHIR_SERVICE_DATA_DIR": str(tmp_path / "data"),
        "FHIR_SERVICE_EMBEDDED_HAPI_PORT": str(hapi_port),
        "FHIR_SERVICE_PORT": str(service_port),
        "FHIR_SERVICE_AUTH_LOCAL_ISSUER": "true",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "fhir_service", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = _wait_for_ready(f"http://127.0.0.1:{service_port}/ready", serve, log_path)
        assert ready.json()["checks"]["hapi"] == {"status": "up"}
        assert httpx.get(f"http://127.0.0.1:{hapi_port}/fhir/metadata", timeout=10).is_success
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)

    assert serve.returncode == 0, log_path.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{hapi_port}/fhir/metadata", timeout=5)
    assert (tmp_path / "data" / "hapi" / "hapi.log").exists()
    assert (tmp_path / "data" / "service.db").exists()


def _wait_for_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> httpx.Response:
    deadline = time.monotonic() + HAPI_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"/ready never answered 200:\n{log_path.read_text()[-4000:]}")
