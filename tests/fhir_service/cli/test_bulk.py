"""``fhir-service import`` and ``export`` as a user runs them: summaries, exit codes, files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template

from tests.support import DATA_DIR, free_port


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_service", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _mixed(tmp_path: Path) -> tuple[Path, str]:
    run = uuid.uuid4().hex[:12]
    template = Template((DATA_DIR / "bulk" / "mixed.ndjson").read_text(encoding="utf-8"))
    path = tmp_path / "mixed.ndjson"
    path.write_text(template.substitute(run=run), encoding="utf-8")
    return path, run


def test_import_lists_rejected_lines_then_export_and_reimport_round_trip(
    conformance_loaded: str, tmp_path: Path
) -> None:
    path, run = _mixed(tmp_path)
    since = (datetime.now(UTC)).isoformat()

    imported = _cli("import", str(path), "--hapi-url", conformance_loaded, "--batch-size", "2")

    assert imported.returncode == 1, imported.stderr
    lines = imported.stdout.splitlines()
    assert lines[0] == f"read 8 contracts from 9 lines of {path}"
    assert lines[1] == "imported 3, already present 0, rejected 5"
    assert lines[2].startswith("  line 2: malformed JSON at column")
    assert lines[5] == f"  line 8: contract '{run}-walk' appears again (first on line 1)"
    assert lines[-1].startswith("time ")
    assert "contracts/s" in lines[-1]
    assert imported.stderr == ""  # no progress bar when stderr is not a terminal

    output = tmp_path / "exported.ndjson"
    env = {**os.environ, "FHIR_SERVICE_HAPI_URL": conformance_loaded}
    exported = _cli("export", "--output", str(output), "--since", since, env=env)

    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.startswith(f"exported {exported.stderr.split()[1]} contracts to ")
    ours = [
        line
        for line in output.read_text(encoding="utf-8").splitlines()
        if json.loads(line)["id"].startswith(run)
    ]
    assert sorted(json.loads(line)["id"] for line in ours) == [
        f"{run}-plain",
        f"{run}-stairs",
        f"{run}-walk",
    ]
    again_path = tmp_path / "ours.ndjson"
    again_path.write_text("".join(f"{line}\n" for line in ours), encoding="utf-8")

    again = _cli("import", str(again_path), "--hapi-url", conformance_loaded)

    assert again.returncode == 0, again.stderr
    assert "imported 0, already present 3, rejected 0" in again.stdout


def test_export_to_stdout_writes_one_contract_per_line(conformance_loaded: str) -> None:
    since = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    result = _cli("export", "--hapi-url", conformance_loaded, "--since", since)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("exported 0 contracts in ")


def test_an_unreachable_hapi_stops_both_with_exit_2(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/fhir"
    path, _ = _mixed(tmp_path)
    output = tmp_path / "out.ndjson"

    imported = _cli("import", str(path), "--hapi-url", nowhere, "--batch-size", "2")
    exported = _cli("export", "--hapi-url", nowhere, "--output", str(output))

    assert imported.returncode == 2
    assert "error: the import stopped after line 0 of 9: HAPI FHIR at" in imported.stderr
    assert "run the same command again to continue" in imported.stderr
    assert exported.returncode == 2
    assert "error: the export stopped: HAPI FHIR at" in exported.stderr
    assert not output.exists()
    assert list(tmp_path.iterdir()) == [path]


def test_a_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("import", str(tmp_path / "nowhere.ndjson"), "--hapi-url", "http://x/fhir")

    assert result.returncode == 2
    assert "cannot read" in result.stderr
