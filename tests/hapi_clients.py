"""HAPI FHIR's own Java clients (``tests/clients/hapi``): build the jar when needed, run it.

The jar runs one command on one input file and prints one JSON object; see ``HapiClients.java``.
Java and Maven are what the project already needs for HAPI, so their absence fails the test
rather than skipping it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PROJECT_DIR", "jar", "run"]

PROJECT_DIR = Path(__file__).parent / "clients" / "hapi"
_JAR = PROJECT_DIR / "target" / "hapi-clients.jar"
# A first build on a fresh machine downloads the shade plugin beside what hapi/ already pulled.
_BUILD_TIMEOUT = 900.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: HAPI's Java clients need Java 17+ and Maven 3.8+")
    return path


def _stale() -> bool:
    if not _JAR.exists():
        return True
    built = _JAR.stat().st_mtime
    sources = [PROJECT_DIR / "pom.xml", *(PROJECT_DIR / "src").rglob("*")]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def jar() -> Path:
    """The runnable jar, built with Maven first when it is missing or older than its sources."""
    if _stale():
        built = subprocess.run(
            [_tool("mvn"), "-q", "-B", "package"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT,
            check=False,
        )
        if built.returncode != 0:
            pytest.fail(f"mvn package failed in {PROJECT_DIR}:\n{built.stdout[-6000:]}")
    return _JAR


def run(built: Path, command: str, given: dict[str, Any], workdir: Path, timeout: float) -> Any:
    """Run ``command`` (``client`` or ``validate``) on ``given``; the JSON object it prints."""
    path = workdir / f"{command}-input.json"
    path.write_text(json.dumps(given), encoding="utf-8")
    try:
        done = subprocess.run(
            [_tool("java"), "-jar", str(built), command, str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"java -jar {built.name} {command} took over {timeout:.0f} s: {exc.stderr!r}")
    if done.returncode != 0:
        pytest.fail(f"java -jar {built.name} {command} exited {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout)
