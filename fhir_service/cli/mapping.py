"""``fhir-service map``: a contract's JSON to its FHIR Bundle and back, for integrators.

Bad input prints every error found, each with the place it concerns (a JSON path into a
contract, a FHIRPath into a Bundle), and exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from fhir_service.contract import Contract
from fhir_service.contract.problems import problems_of
from fhir_service.mapping.codes import unknown_codes
from fhir_service.mapping.from_fhir import UnreadableContractError, contract_from_bundle
from fhir_service.mapping.tables import Language
from fhir_service.mapping.to_fhir import contract_to_bundle

__all__ = ["from_fhir", "to_fhir"]


def to_fhir(path: Path, language: Language, out: TextIO = sys.stdout) -> int:
    """Print the transaction Bundle of the contract in ``path``; 0, or 1 after printing errors."""
    document = _read_json(path)
    if isinstance(document, _Errors):
        return document.report()
    try:
        contract = Contract.model_validate(document)
    except ValidationError as exc:
        return _Errors([(p.path, p.message) for p in problems_of(exc)]).report()
    problems = unknown_codes(contract)
    if problems:
        return _Errors(problems).report()
    _print(contract_to_bundle(contract, language), out)
    return 0


def from_fhir(path: Path, out: TextIO = sys.stdout) -> int:
    """Print the contract held by the FHIR Bundle in ``path``; 0, or 1 after printing errors."""
    document = _read_json(path)
    if isinstance(document, _Errors):
        return document.report()
    try:
        contract = contract_from_bundle(document, codes=True)
    except UnreadableContractError as exc:
        # FHIRPaths into the Bundle, as POST /fhir names them.
        return _Errors([(i.expression, i.message) for i in exc.issues]).report()
    _print(contract.model_dump(mode="json", exclude_none=True), out)
    return 0


class _Errors:
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors

    def report(self) -> int:
        for path, message in self.errors:
            print(f"{path}: {message}", file=sys.stderr)
        print(f"{len(self.errors)} error(s)", file=sys.stderr)
        return 1


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return _Errors([("$", f"cannot read {path}: {exc.strerror}")])
    except UnicodeDecodeError:
        return _Errors([("$", f"{path} is not UTF-8 text")])
    except json.JSONDecodeError as exc:
        return _Errors(
            [("$", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]
        )


def _print(document: Any, out: TextIO) -> None:
    json.dump(document, out, ensure_ascii=False, indent=2)
    out.write("\n")
