"""The names of codes in the reader's language, for JSON clients to show instead of the codes.

Names come from the code tables under ``mappings/`` (our CodeSystems, relationships, schedule
units): the same the FHIR mapping and the plan page use, so every face of a contract names a
code alike. The statuses of activities, goals and agreed times have no names there, so they are
not labelled.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from functools import cache
from typing import Annotated

from pydantic import BaseModel, Field

from fhir_service.contract import (
    Activity,
    ActivityOwner,
    CareContactKind,
    ContractStatus,
    OrganizationKind,
    Professional,
    Relative,
    Schedule,
)
from fhir_service.mapping import (
    CodeTable,
    Language,
    code_table,
    code_table_names,
    relationships,
    schedule_units,
)

__all__ = ["Labels", "label_tables", "labels", "labels_used_by"]

Labels = Annotated[
    dict[str, dict[str, str]],
    Field(
        description="Names of codes by code table, then code: e.g. "
        "labels['activity-category']['exercise'] is 'Träning' in Swedish.",
        examples=[{"contract-status": {"agreed": "Överenskommet"}}],
    ),
]
"""The names of codes in one language: table name -> code -> name."""

# Which table names a code: by the enum the code is, or by the field of a model that holds it.
_ENUM_TABLES: dict[type[StrEnum], str] = {
    ContractStatus: "contract-status",
    ActivityOwner: "activity-owner",
    OrganizationKind: "organization-kind",
    CareContactKind: "care-team-role",
}
_FIELD_TABLES: tuple[tuple[type[BaseModel], str, str], ...] = (
    (Activity, "category", "activity-category"),
    (Professional, "role", "care-team-role"),
    (Relative, "relationship", "relationship"),
    (Schedule, "unit", "schedule-unit"),
)


@cache
def label_tables() -> dict[str, CodeTable]:
    """Every code table with names, by the name its labels go under."""
    tables = {name: code_table(name) for name in code_table_names()}
    return tables | {table.name: table for table in (relationships(), schedule_units())}


def labels(language: Language, tables: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """The name in ``language`` of every code of ``tables`` (all of them when None)."""
    chosen = label_tables() if tables is None else {name: label_tables()[name] for name in tables}
    return {
        name: {code: table.display(code, language) for code in table.names}
        for name, table in chosen.items()
    }


def labels_used_by(models: Iterable[BaseModel], language: Language) -> dict[str, dict[str, str]]:
    """The name in ``language`` of every code ``models`` hold (contracts, a plan), and no other.

    A code its table does not know (data written around the mapping) is left unnamed rather
    than failing the answer it belongs to.
    """
    found: dict[str, set[str]] = {}
    for model in models:
        _collect(model, found)
    named: dict[str, dict[str, str]] = {}
    for name, codes in sorted(found.items()):
        table = label_tables()[name]
        known = sorted(code for code in codes if code in table.names)
        if known:
            named[name] = {code: table.display(code, language) for code in known}
    return named


def _collect(value: object, found: dict[str, set[str]]) -> None:
    if isinstance(value, StrEnum):
        table = _ENUM_TABLES.get(type(value))
        if table is not None:
            found.setdefault(table, set()).add(value.value)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            field = getattr(value, name)
            table = _field_table(value, name)
            if table is not None and isinstance(field, str):
                found.setdefault(table, set()).add(field)
            else:
                _collect(field, found)
    elif isinstance(value, tuple | list):
        for item in value:
            _collect(item, found)


def _field_table(model: BaseModel, field: str) -> str | None:
    for kind, name, table in _FIELD_TABLES:
        if field == name and isinstance(model, kind):
            return table
    return None
