"""FHIR identifier systems of the national identifier kinds, read from a code table.

``mappings/identifier-systems.json`` gives, per `IdentifierKind`, the system URI the service
writes (``emit``) and the alias URIs it also understands on input (``accept``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fhir_service.contract import Identifier
from fhir_service.contract.identifiers import IdentifierKind
from fhir_service.mapping.tables import MAPPINGS_DIR

__all__ = ["kind_for", "system_for", "system_of"]

_TABLE_PATH = MAPPINGS_DIR / "identifier-systems.json"


def system_for(kind: IdentifierKind) -> str:
    """Return the identifier system URI the service writes for ``kind``."""
    return _tables().emit[kind]


def system_of(identifier: Identifier) -> str:
    """The system of ``identifier``: its kind's, or the one an identifier of kind ``other``
    carries."""
    if identifier.kind is IdentifierKind.OTHER:
        return str(identifier.system)
    return system_for(identifier.kind)


def kind_for(system: str) -> IdentifierKind | None:
    """Return the kind whose emitted or accepted system is ``system``, or None if unknown.

    System URIs are compared exactly, as FHIR compares them.
    """
    return _tables().kinds.get(system)


@dataclass(frozen=True)
class _Tables:
    emit: Mapping[IdentifierKind, str]
    kinds: Mapping[str, IdentifierKind]


@cache
def _tables() -> _Tables:
    return _load(_TABLE_PATH)


def _load(path: Path) -> _Tables:
    # Checked as a whole so that a table drifting from the enum fails at first use, naming the
    # file, instead of as a KeyError for one kind on some later request.
    raw: object = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by identifier kind")
    known = {str(kind) for kind in IdentifierKind if kind is not IdentifierKind.OTHER}
    if raw.keys() != known:
        missing = ", ".join(sorted(known - raw.keys())) or "none"
        unknown = ", ".join(sorted(str(key) for key in raw.keys() - known)) or "none"
        raise ValueError(f"{path}: kinds missing: {missing}; unknown kinds: {unknown}")
    emit: dict[IdentifierKind, str] = {}
    kinds: dict[str, IdentifierKind] = {}
    for key, entry in raw.items():
        kind = IdentifierKind(key)
        systems = _systems(entry)
        if systems is None:
            raise ValueError(
                f"{path}: {kind}: expected 'emit' as a string and 'accept' as a list of strings"
            )
        emit[kind] = systems[0]
        for system in systems:
            # One system naming two kinds would make kind_for() depend on the file's order.
            owner = kinds.setdefault(system, kind)
            if owner is not kind:
                raise ValueError(f"{path}: system {system!r} is listed under {owner} and {kind}")
    return _Tables(emit=emit, kinds=kinds)


def _systems(entry: object) -> list[str] | None:
    """The entry's emitted system followed by its aliases, or None if the entry is malformed."""
    if not isinstance(entry, dict):
        return None
    emitted, accepted = entry.get("emit"), entry.get("accept")
    if not isinstance(emitted, str) or not isinstance(accepted, list):
        return None
    if not all(isinstance(system, str) for system in accepted):
        return None
    return [emitted, *accepted]
