"""Code tables from ``mappings/``: our CodeSystems, the SNOMED CT ConceptMap, relationships,
schedule units.

Loaded once per process; the JSON files are the single source of codes and their names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from fhir_service.contract import Language

__all__ = [
    "MAPPINGS_DIR",
    "CodeTable",
    "Language",
    "MappingData",
    "UnknownCodeError",
    "care_guarantee_steps",
    "care_team_role_of",
    "code_table",
    "code_table_names",
    "language_of",
    "relationships",
    "schedule_units",
    "snomed_for_role",
]

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"


# Norwegian comes as nb, nn or no; Nynorsk readers get Bokmål rather than Swedish.
_TAGS: dict[str, Language] = {"sv": "sv", "nb": "nb", "nn": "nb", "no": "nb", "en": "en"}


def language_of(tag: str) -> Language | None:
    """The language we write in for the BCP 47 ``tag`` (``sv-SE`` is sv, ``nn`` is nb); None
    when we write in none of its kind."""
    return _TAGS.get(tag.lower().split("-")[0])


class MappingData(BaseModel):
    """A record of a structured mapping file: camelCase keys, none unknown, read-only."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel)


class UnknownCodeError(ValueError):
    """A code that the table it should come from does not hold."""

    def __init__(self, table: str, code: str) -> None:
        super().__init__(f"unknown {table} code {code!r}")
        self.table = table
        self.code = code


@dataclass(frozen=True)
class CodeTable:
    """One CodeSystem: its canonical URL and, per code, the name in each language."""

    name: str
    system: str
    names: dict[str, dict[str, str]]

    def check(self, code: str) -> str:
        """``code`` itself when the table holds it; :class:`UnknownCodeError` otherwise."""
        if code not in self.names:
            raise UnknownCodeError(self.name, code)
        return code

    def display(self, code: str, language: Language = "en") -> str:
        """The name of ``code`` in ``language``; its English one where the table has no other
        (the less common relationships of HL7's list)."""
        names = self.names[self.check(code)]
        return names.get(language) or names["en"]

    def coding(self, code: str) -> dict[str, str]:
        """A FHIR Coding of ``code`` with its English display."""
        return {"system": self.system, "code": self.check(code), "display": self.display(code)}


@cache
def code_table(name: str) -> CodeTable:
    """The CodeSystem ``mappings/codesystems/<name>.json``."""
    resource = _load(Path("codesystems") / f"{name}.json")
    names = {
        concept["code"]: {"en": concept["display"]}
        | {d["language"]: d["value"] for d in concept.get("designation", [])}
        for concept in resource["concept"]
    }
    return CodeTable(name=name, system=resource["url"], names=names)


@cache
def code_table_names() -> tuple[str, ...]:
    """The names `code_table` takes: one per CodeSystem under ``mappings/codesystems``."""
    return tuple(sorted(path.stem for path in (MAPPINGS_DIR / "codesystems").glob("*.json")))


@cache
def snomed_for_role(role: str) -> tuple[str, str] | None:
    """The SNOMED CT (code, display) of a care team role, where one exists."""
    concept_map = _load(Path("conceptmaps") / "care-team-role-to-snomed.json")
    for element in concept_map["group"][0]["element"]:
        if element["code"] == role:
            target = element["target"][0]
            return target["code"], target["display"]
    return None


def care_team_role_of(concept: Any) -> str | None:
    """Our care team role a CodeableConcept from any sender says: a coding of ours, one the
    ConceptMap ``care-team-role-from-other-systems`` maps (SNOMED CT, a sender's own system),
    else its text or a coding's display naming one of our roles in any of our languages."""
    roles = code_table("care-team-role")
    concept = concept if isinstance(concept, dict) else {}
    listed = concept.get("coding")
    codings = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    for coding in codings:
        if coding.get("system") == roles.system and coding.get("code") in roles.names:
            return str(coding["code"])
    mapped = _roles_from_other_systems()
    for coding in codings:
        found = mapped.get((str(coding.get("system")), str(coding.get("code"))))
        if found is not None:
            return found
    said = [concept.get("text"), *(c.get("display") for c in codings)]
    named = {
        name.casefold(): code for code, names in roles.names.items() for name in names.values()
    }
    for text in said:
        if isinstance(text, str) and text.strip().casefold() in named:
            return named[text.strip().casefold()]
    return None


@cache
def _roles_from_other_systems() -> dict[tuple[str, str], str]:
    concept_map = _load(Path("conceptmaps") / "care-team-role-from-other-systems.json")
    return {
        (group["source"], element["code"]): element["target"][0]["code"]
        for group in concept_map["group"]
        for element in group["element"]
    }


@cache
def care_guarantee_steps() -> dict[str, dict[str, bool]]:
    """The care guarantee's step codes by jurisdiction, each with whether its deadline is set
    per case (Norway's juridisk frist) rather than by fixed days. The rules: ``booking.guarantee``.
    """
    document = _load(Path("booking") / "care-guarantee.json")
    return {
        rules["jurisdiction"]: {step["code"]: step["days"] is None for step in rules["steps"]}
        for rules in document["ruleSets"]
    }


@cache
def relationships() -> CodeTable:
    """The relationships a relative may have to the patient: v3 RoleCode's personal ones."""
    table = _load(Path("relationships.json"))
    return CodeTable(name="relationship", system=table["system"], names=table["codes"])


@cache
def schedule_units() -> CodeTable:
    """The units of time a recurring activity's schedule counts in (UCUM: d, wk, mo, a)."""
    table = _load(Path("schedule-units.json"))
    return CodeTable(name="schedule-unit", system=table["system"], names=table["codes"])


def _load(relative: Path) -> Any:
    return json.loads((MAPPINGS_DIR / relative).read_text(encoding="utf-8"))
