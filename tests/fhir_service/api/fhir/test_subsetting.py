"""_summary and _elements cut a resource after the walls, and say so (SUBSETTED)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_service.api.fhir.subsetting import SUBSETTED, SubsetError, subset_of, subsetted

CAREPLAN: dict[str, Any] = {
    "resourceType": "CarePlan",
    "id": "7",
    "meta": {"versionId": "2"},
    "text": {"status": "generated", "div": "<div>plan</div>"},
    "identifier": [{"system": "urn:x", "value": "1"}],
    "status": "active",
    "intent": "plan",
    "title": "Plan",
    "subject": {"reference": "Patient/1"},
    "activity": [{"detail": {"status": "not-started"}}],
    "note": [{"text": "n"}],
}


def _cut(*params: tuple[str, str]) -> dict[str, Any]:
    subset, rest = subset_of(list(params))
    assert all(name not in ("_elements",) for name, _ in rest)
    return subsetted(CAREPLAN, subset)


def test_elements_keep_what_is_named_and_what_is_mandatory() -> None:
    cut = _cut(("_elements", "title,note"))

    assert set(cut) == {
        "resourceType",
        "id",
        "meta",
        "title",
        "note",
        "status",
        "intent",
        "subject",
    }
    assert cut["meta"]["tag"] == [SUBSETTED]
    assert cut["meta"]["versionId"] == "2"


def test_each_summary_keeps_what_fhir_says() -> None:
    text = _cut(("_summary", "text"))
    data = _cut(("_summary", "data"))
    summary = _cut(("_summary", "true"))

    assert set(text) == {"resourceType", "id", "meta", "text", "status", "intent", "subject"}
    assert "text" not in data
    assert "activity" in data
    # CarePlan.activity and .note are no summary elements; identifier and title are.
    assert {"identifier", "title", "status"} <= set(summary)
    assert not {"activity", "note", "text"} & set(summary)
    assert SUBSETTED in summary["meta"]["tag"]


def test_a_whole_resource_is_left_as_it_is() -> None:
    assert _cut() is CAREPLAN
    assert _cut(("_summary", "false")) is CAREPLAN


def test_count_is_left_to_the_search_and_an_unknown_summary_refused() -> None:
    subset, rest = subset_of([("_summary", "count"), ("status", "active")])

    assert subset.whole
    assert rest == [("_summary", "count"), ("status", "active")]
    with pytest.raises(SubsetError):
        subset_of([("_summary", "everything")])
