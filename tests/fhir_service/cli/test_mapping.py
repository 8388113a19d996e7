"""``fhir-service map``: both directions, and every error of bad input with its JSON path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import Contract
from fhir_service.mapping.to_fhir import contract_to_bundle

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples"
KNEE = EXAMPLES / "contracts" / "knee-replacement.json"


def _map(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhir_service", "map", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _write(tmp_path: Path, document: Any, name: str = "input.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def test_to_fhir_prints_the_transaction_bundle() -> None:
    result = _map("to-fhir", str(KNEE), "--language", "en")

    assert result.returncode == 0, result.stderr
    contract = Contract.model_validate_json(KNEE.read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == contract_to_bundle(contract, "en")


@pytest.mark.parametrize("example", sorted((EXAMPLES / "contracts").glob("*.json")), ids=str)
def test_from_fhir_gives_back_the_contract(tmp_path: Path, example: Path) -> None:
    bundle = _map("to-fhir", str(example))
    assert bundle.returncode == 0, bundle.stderr

    result = _map("from-fhir", str(_write(tmp_path, json.loads(bundle.stdout))))

    assert result.returncode == 0, result.stderr
    original = Contract.model_validate_json(example.read_text(encoding="utf-8"))
    assert Contract.model_validate_json(result.stdout) == original


@pytest.mark.parametrize("example", sorted((EXAMPLES / "contracts").glob("*.json")), ids=str)
def test_committed_fhir_examples_are_what_the_mapping_produces(example: Path) -> None:
    committed = EXAMPLES / example.name.replace(".json", ".bundle.json")
    contract = Contract.model_validate_json(example.read_text(encoding="utf-8"))

    assert json.loads(committed.read_text(encoding="utf-8")) == contract_to_bundle(contract)


def test_every_error_of_a_bad_contract_is_listed_with_its_path(tmp_path: Path) -> None:
    contract = json.loads(KNEE.read_text(encoding="utf-8"))
    contract["patient"]["identifier"]["value"] = "191212121213"
    contract["title"] = ""
    contract["goals"][0]["due"] = "soon"

    result = _map("to-fhir", str(_write(tmp_path, contract)))

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "$.title: must not be empty" in lines
    assert any(
        line.startswith("$.patient.identifier.value:") and "check digit is 3, expected 2" in line
        for line in lines
    )
    assert any(line.startswith("$.goals[0].due:") for line in lines)
    assert lines[-1] == "3 error(s)"


def test_unknown_codes_are_listed_with_their_paths(tmp_path: Path) -> None:
    contract = json.loads(KNEE.read_text(encoding="utf-8"))
    contract["activities"][1]["category"] = "yoga"
    contract["professionals"][0]["role"] = "astronaut"

    result = _map("to-fhir", str(_write(tmp_path, contract)))

    assert result.returncode == 1
    assert "$.activities[1].category: unknown activity-category code 'yoga'" in result.stderr
    assert "$.professionals[0].role: unknown care-team-role code 'astronaut'" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": ', "malformed JSON at line 1 column 8"),
        ("[1, 2]", "$: must be a JSON object"),
        ("\udcff", "not UTF-8 text"),
    ],
)
def test_malformed_input_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))

    result = _map("to-fhir", str(path))

    assert result.returncode == 1
    assert message in result.stderr


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _map("to-fhir", str(tmp_path / "nowhere.json"))

    assert result.returncode == 1
    assert "cannot read" in result.stderr


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"resourceType": "Patient"}, "Bundle: must be a FHIR Bundle"),
        ({"resourceType": "Bundle", "entry": []}, "Bundle: holds 0 CarePlans; a contract is one"),
    ],
)
def test_from_fhir_rejects_what_holds_no_contract(
    tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    result = _map("from-fhir", str(_write(tmp_path, document)))

    assert result.returncode == 1
    assert message in result.stderr


def test_from_fhir_names_a_missing_resource(tmp_path: Path) -> None:
    bundle = json.loads((EXAMPLES / "knee-replacement.bundle.json").read_text(encoding="utf-8"))
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Goal"]

    result = _map("from-fhir", str(_write(tmp_path, bundle)))

    careplan = next(
        i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "CarePlan"
    )
    assert result.returncode == 1
    # Each missing Goal on its own line, at the CarePlan's reference to it.
    missing = "refers to a Goal the Bundle does not hold; add it as an entry"
    for index in range(2):
        assert f"Bundle.entry[{careplan}].resource.goal[{index}]: {missing}\n" in result.stderr
    assert "2 error(s)" in result.stderr


def _careplan_mapped(path: Path, language_setting: str) -> dict[str, Any]:
    env = {**os.environ, "FHIR_SERVICE_NARRATIVE_LANGUAGE": language_setting}
    result = subprocess.run(
        [sys.executable, "-m", "fhir_service", "map", "to-fhir", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    careplan: dict[str, Any] = next(
        e["resource"]
        for e in json.loads(result.stdout)["entry"]
        if e["resource"]["resourceType"] == "CarePlan"
    )
    return careplan


def test_the_narrative_speaks_the_contracts_language_and_the_setting_only_defaults(
    tmp_path: Path,
) -> None:
    german = json.loads(KNEE.read_text(encoding="utf-8"))
    german["language"] = "de"

    swedish = _careplan_mapped(KNEE, "nb")
    in_german = _careplan_mapped(_write(tmp_path, german), "nb")

    # A Swedish unit's contract is Swedish, whatever the setting says.
    assert (swedish["language"], 'lang="sv"' in swedish["text"]["div"]) == ("sv", True)
    # No narrative is written in German: the setting's language stands in, and says so.
    assert (in_german["language"], 'lang="nb"' in in_german["text"]["div"]) == ("de", True)
