"""``_summary`` and ``_elements``: a resource cut down to what the caller asked for.

Applied here, after the walls have screened the whole resource, not by HAPI: a resource HAPI
cut down lacks what the guard reads (identifiers, security labels), and was dropped as if it
were someone else's. What is cut is tagged ``SUBSETTED``. Which elements are summary elements
and which are mandatory comes from the FHIR definitions ``fhir.resources`` carries (R4B, whose
resources we serve are R4's in these flags).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

__all__ = ["SUBSETTED", "Subset", "SubsetError", "subset_of", "subsetted"]

Resource = dict[str, Any]

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})
_SUMMARIES = frozenset({"true", "false", "text", "data"})


class Subset:
    """What a request asks to keep of each resource: ``_summary`` and ``_elements``."""

    def __init__(self, summary: str | None, elements: frozenset[str] | None) -> None:
        self.summary = summary
        self.elements = elements

    @property
    def whole(self) -> bool:
        """Whether nothing is cut."""
        return self.summary in (None, "false") and not self.elements

    def params(self) -> list[tuple[str, str]]:
        """The parameters that ask for this subset, for the links to further pages."""
        asked = [] if self.summary is None else [("_summary", self.summary)]
        if self.elements:
            asked.append(("_elements", ",".join(sorted(self.elements))))
        return asked


class SubsetError(ValueError):
    """A ``_summary`` value FHIR does not define for a resource (``count`` is a search's)."""


def subset_of(params: list[tuple[str, str]]) -> tuple[Subset, list[tuple[str, str]]]:
    """What ``params`` ask to keep, and the parameters without ``_summary``/``_elements``
    (for HAPI, which is asked for whole resources). ``_summary=count`` stays: it asks for no
    resources at all."""
    summary = next((v for n, v in params if n == "_summary" and v != "count"), None)
    if summary is not None and summary not in _SUMMARIES:
        raise SubsetError(f"_summary={summary}: one of true, text, data, count or false")
    named = [v for n, v in params if n == "_elements"]
    elements = frozenset(e.strip() for v in named for e in v.split(",") if e.strip()) or None
    rest = [
        (n, v) for n, v in params if n != "_elements" and not (n == "_summary" and v != "count")
    ]
    return Subset(summary, elements), rest


def subsetted(resource: Resource, subset: Subset) -> Resource:
    """``resource`` with only what ``subset`` keeps, tagged SUBSETTED when anything went."""
    if subset.whole:
        return resource
    kind = str(resource.get("resourceType"))
    if subset.summary == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    else:
        if subset.summary == "text":
            wanted = {"text"} | _mandatory(kind)
        elif subset.summary == "true":
            wanted = _summary_elements(kind)
        else:
            wanted = set(subset.elements or ()) | _mandatory(kind)
        kept = {k: v for k, v in resource.items() if k in wanted | _ALWAYS}
    if kept == resource:
        return resource
    meta = dict(kept.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    return {**kept, "meta": meta}


@cache
def _fields(kind: str) -> dict[str, dict[str, Any]]:
    try:
        model = get_fhir_model_class(kind)
    except KeyError:
        return {}
    fields = {}
    for name, field in model.model_fields.items():
        flags = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        fields[str(field.alias or name)] = {**flags, "_required": field.is_required()}
    return fields


def _summary_elements(kind: str) -> set[str]:
    return {name for name, flags in _fields(kind).items() if flags.get("summary_element_property")}


def _mandatory(kind: str) -> set[str]:
    return {
        name
        for name, flags in _fields(kind).items()
        if flags.get("_required") or flags.get("element_required")
    }
