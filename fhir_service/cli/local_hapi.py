"""The local HAPI FHIR server built from ``hapi/``: build it when needed, start, wait, stop.

Used by ``fhir-service hapi ...``, by ``fhir-service serve`` as the embedded default, and by the
test session. The server is a plain child process; a detached one records its pid in the data
directory so that ``status`` and ``stop`` can find it from another shell.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

_log = logging.getLogger(__name__)

__all__ = [
    "HAPI_PROJECT_DIR",
    "HapiBuildError",
    "HapiStartError",
    "LocalHapi",
    "build",
    "needs_build",
]

HAPI_PROJECT_DIR = Path(__file__).resolve().parents[2] / "hapi"
_BUILT_JAR = Path("target") / "hapi-launcher.jar"
# Servers run from a copy that a rebuild replaces atomically: Maven rewrites its jar in place,
# which would corrupt the classes and resources a running server still loads from it.
_JAR = Path("target") / "run" / "hapi-launcher.jar"
_PR_SET_PDEATHSIG = 1
_PID_FILE = "hapi.pid"
_LOG_FILE = "hapi.log"


class HapiBuildError(RuntimeError):
    """Maven could not build the launcher; the message ends with Maven's own output."""


class HapiStartError(RuntimeError):
    """The server did not come up; the message ends with the tail of its log."""


def jar_path(project_dir: Path = HAPI_PROJECT_DIR) -> Path:
    """Where the runnable launcher jar is built."""
    return project_dir / _JAR


def needs_build(project_dir: Path = HAPI_PROJECT_DIR) -> bool:
    """True when the jar is missing or older than the pom or any source file."""
    jar = jar_path(project_dir)
    if not jar.exists():
        return True
    built = jar.stat().st_mtime
    sources = [project_dir / "pom.xml", *(project_dir / "src").rglob("*")]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def build(project_dir: Path = HAPI_PROJECT_DIR, *, force: bool = False) -> Path:
    """Build the launcher jar with Maven unless it is up to date; return its path."""
    if not force and not needs_build(project_dir):
        return jar_path(project_dir)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise HapiBuildError("Maven (mvn) is not on PATH; install Maven 3.8+ and Java 17+")
    _log.info(
        "building the HAPI launcher (a first build downloads ~340 MB)",
        extra={"dir": str(project_dir)},
    )
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [mvn, "-B", "-q", "package", "-DskipTests"],
        cwd=project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HapiBuildError(f"mvn package failed in {project_dir}:\n{result.stdout[-4000:]}")
    runnable = jar_path(project_dir)
    runnable.parent.mkdir(parents=True, exist_ok=True)
    staging = runnable.with_suffix(".jar.tmp")
    shutil.copyfile(project_dir / _BUILT_JAR, staging)
    staging.replace(runnable)
    return runnable


@dataclass
class LocalHapi:
    """One local HAPI server: where it listens and where it keeps its data.

    ``data_dir=None`` runs it on an in-memory H2 database (tests); otherwise an H2 file under
    ``data_dir`` keeps the data across restarts. ``jdbc_url`` overrides both (PostgreSQL).
    """

    port: int = 8080
    data_dir: Path | None = None
    jdbc_url: str | None = None
    jdbc_username: str | None = None
    jdbc_password: str | None = None
    project_dir: Path = HAPI_PROJECT_DIR
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        """The FHIR base URL, e.g. ``http://127.0.0.1:8080/fhir``."""
        return f"http://127.0.0.1:{self.port}/fhir"

    def command(self) -> list[str]:
        """The java command line that runs this server."""
        java = shutil.which("java")
        if java is None:
            raise HapiStartError("Java (java) is not on PATH; install Java 17+")
        args = [java, *os.environ.get("HAPI_JAVA_OPTS", "-Xmx2g").split()]
        args += ["-jar", str(jar_path(self.project_dir)), f"--hapi.port={self.port}"]
        if self.jdbc_url:
            args.append(f"--hapi.jdbc-url={self.jdbc_url}")
        elif self.data_dir is None:
            args.append(f"--hapi.jdbc-url=jdbc:h2:mem:hapi-{uuid.uuid4().hex};DB_CLOSE_DELAY=-1")
        else:
            args.append(f"--hapi.data-dir={self.data_dir.resolve()}")
        return args

    def environment(self) -> dict[str, str]:
        """The child's environment: ours, plus database credentials (kept off the command line,
        where any local user could read them)."""
        env = dict(os.environ)
        if self.jdbc_username is not None:
            env["HAPI_JDBC_USERNAME"] = self.jdbc_username
        if self.jdbc_password is not None:
            env["HAPI_JDBC_PASSWORD"] = self.jdbc_password
        return env

    def is_answering(self, timeout: float = 2.0) -> bool:
        """True when ``GET /metadata`` answers 200."""
        try:
            response = httpx.get(f"{self.base_url}/metadata", timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == httpx.codes.OK

    def start(self, *, log: IO[bytes] | None = None, detach: bool = False) -> None:
        """Start the server process (building first if needed); does not wait for it."""
        build(self.project_dir)
        if self.is_answering():
            raise HapiStartError(f"something already answers on {self.base_url}")
        self._process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            self.command(),
            env=self.environment(),
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            preexec_fn=None if detach else _die_with_parent,
        )

    def wait_until_ready(self, timeout: float, log_path: Path | None = None) -> None:
        """Block until ``/metadata`` answers; raise with the log's tail if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise HapiStartError(
                    f"HAPI exited with code {self._process.returncode}{_tail(log_path)}"
                )
            if self.is_answering():
                return
            time.sleep(1.0)
        raise HapiStartError(f"HAPI did not answer within {timeout:.0f} s{_tail(log_path)}")

    def wait(self) -> int:
        """Block until the process this object started exits; return its exit code."""
        if self._process is None:
            raise RuntimeError("not started")
        return self._process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the process this object started: SIGTERM, then SIGKILL after ``timeout``."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        """``kill -9`` the process this object started: no shutdown, whatever it is doing (what
        a crash does; the fault tests do it to HAPI mid-request)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    # Detached servers: started by one command, found again by another through the pid file.

    def start_detached(self, timeout: float) -> int:
        """Start in the background, wait until ready, record the pid; return the pid."""
        data_dir = self._require_data_dir()
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = data_dir / _LOG_FILE
        with log_path.open("ab") as log:
            self.start(log=log, detach=True)
        assert self._process is not None
        (data_dir / _PID_FILE).write_text(f"{self._process.pid}\n")
        try:
            self.wait_until_ready(timeout, log_path)
        except HapiStartError:
            self.stop()
            (data_dir / _PID_FILE).unlink(missing_ok=True)
            raise
        return self._process.pid

    def detached_pid(self) -> int | None:
        """The pid of a detached server started for this data directory, if it still runs."""
        pid_file = self._require_data_dir() / _PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def stop_detached(self, timeout: float = 30.0) -> bool:
        """Stop the detached server; return False when none was running."""
        pid = self.detached_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.5)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        (self._require_data_dir() / _PID_FILE).unlink(missing_ok=True)
        return True

    def _require_data_dir(self) -> Path:
        if self.data_dir is None:
            raise ValueError("a detached HAPI needs a data directory")
        return self.data_dir


def _die_with_parent() -> None:
    # An attached server must not outlive the process that started it, even one killed with
    # SIGKILL (a test run stopped by a time-out, say): Linux sends it SIGTERM then.
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(log_path: Path | None, lines: int = 40) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "; last lines of the log:\n" + "\n".join(text)
