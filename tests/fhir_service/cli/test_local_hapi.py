"""The launcher helper: when to rebuild, how HAPI is started, and that it never outlives us."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fhir_service.cli.local_hapi import HAPI_PROJECT_DIR, LocalHapi, needs_build


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "src" / "main").mkdir(parents=True)
    (tmp_path / "pom.xml").write_text("<project/>")
    (tmp_path / "src" / "main" / "App.java").write_text("class App {}")
    return tmp_path


def _touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (mtime, mtime))


def test_missing_jar_needs_a_build(project: Path) -> None:
    assert needs_build(project)


def test_jar_newer_than_sources_is_up_to_date(project: Path) -> None:
    for source in (project / "pom.xml", project / "src" / "main" / "App.java"):
        os.utime(source, (1_000, 1_000))
    _touch(project / "target" / "run" / "hapi-launcher.jar", 2_000)

    assert not needs_build(project)


def test_source_changed_after_the_build_needs_a_rebuild(project: Path) -> None:
    os.utime(project / "pom.xml", (1_000, 1_000))
    _touch(project / "target" / "run" / "hapi-launcher.jar", 2_000)
    os.utime(project / "src" / "main" / "App.java", (3_000, 3_000))

    assert needs_build(project)


def test_command_selects_database_by_mode(tmp_path: Path) -> None:
    memory = LocalHapi(port=9001).command()
    on_disk = LocalHapi(port=9002, data_dir=tmp_path).command()
    postgres = LocalHapi(port=9003, jdbc_url="jdbc:postgresql://db/hapi").command()

    assert "--hapi.port=9001" in memory
    assert any(a.startswith("--hapi.jdbc-url=jdbc:h2:mem:") for a in memory)
    assert f"--hapi.data-dir={tmp_path.resolve()}" in on_disk
    assert "--hapi.jdbc-url=jdbc:postgresql://db/hapi" in postgres
    assert str(HAPI_PROJECT_DIR / "target" / "run" / "hapi-launcher.jar") in memory


def test_database_credentials_stay_off_the_command_line() -> None:
    hapi = LocalHapi(jdbc_url="jdbc:postgresql://db/hapi", jdbc_username="hapi", jdbc_password="s3")

    assert not any("s3" in arg or "hapi.jdbc-password" in arg for arg in hapi.command())
    assert hapi.environment()["HAPI_JDBC_USERNAME"] == "hapi"
    assert hapi.environment()["HAPI_JDBC_PASSWORD"] == "s3"


def test_attached_server_does_not_outlive_a_killed_parent() -> None:
    parent_code = (
        "from fhir_service.cli.local_hapi import LocalHapi\n"
        "from tests.support import free_port\n"
        "h = LocalHapi(port=free_port()); h.start(); print(h._process.pid, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())

    parent.kill()
    parent.wait()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _running(server_pid):
        time.sleep(0.5)
    assert not _running(server_pid)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An exited child of init may linger as a zombie for a moment; it is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
