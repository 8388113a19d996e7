"""One line of an NDJSON import: the contract it holds, or why it cannot be imported."""

from __future__ import annotations

import json

from pydantic import ValidationError

from fhir_service.contract import Contract
from fhir_service.contract.problems import problems_of
from fhir_service.mapping.codes import unknown_codes

__all__ = ["read_line"]


def read_line(raw: bytes) -> Contract | str:
    """The contract on one NDJSON line, or the reason it cannot be imported.

    >>> read_line(b'{"id": ')
    'malformed JSON at column 8: Expecting value'
    """
    try:
        document = json.loads(raw.rstrip(b"\r\n").decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"malformed JSON at column {exc.colno}: {exc.msg}"
    try:
        contract = Contract.model_validate(document)
    except ValidationError as exc:
        return "; ".join(f"{p.path}: {p.message}" for p in problems_of(exc))
    problems = unknown_codes(contract)
    if problems:
        return "; ".join(f"{path}: {message}" for path, message in problems)
    return contract
