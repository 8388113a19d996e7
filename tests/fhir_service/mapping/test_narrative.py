"""The contract's narrative: well-formed FHIR XHTML in sv, nb and en, with the contract's text.

Headings come from mappings/narrative-labels.json, read here on their own; what a person typed
stays text (no markup gets through); only elements and attributes FHIR allows in a narrative
appear; and a section with nothing in it is left out, heading and all.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from fhir_service.contract import Contract
from fhir_service.mapping.narrative import narrative
from fhir_service.mapping.tables import Language

ROOT = Path(__file__).parents[3]
EXAMPLE = ROOT / "profiles/examples/contracts/knee-replacement.json"
LABELS: dict[str, Any] = json.loads(
    (ROOT / "mappings/narrative-labels.json").read_text(encoding="utf-8")
)
UNITS: dict[str, dict[str, str]] = json.loads(
    (ROOT / "mappings/schedule-units.json").read_text(encoding="utf-8")
)["codes"]
LANGUAGES: list[Language] = list(get_args(Language))

XHTML = "{http://www.w3.org/1999/xhtml}"
# The elements FHIR allows in a narrative (R4, Narrative.div, constraint txt-1).
# fmt: off
FHIR_ELEMENTS = frozenset({
    "a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code", "col",
    "colgroup", "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "img", "li", "ol", "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "ul", "var",
})
# fmt: on
HOSTILE = '<script>alert(1)</script> & "x"'

# Section label keys, in the order the narrative shows them, and the field that fills each.
SECTIONS = [
    ("agreement", "activities"),
    ("goals", "goals"),
    ("resources", "patient_resources"),
    ("wishes", "wishes"),
    ("care_contacts", "care_contacts"),
    ("agreed_times", "agreed_times"),
    ("team", "professionals"),
]
PATIENT_OWNER = {"sv": "Patienten", "nb": "Pasienten", "en": "The patient"}
DAUGHTER = {
    "key": "daughter",
    "name": {"family": "Tolvansson", "given": ["Anna"]},
    "relationship": "CHILD",
}
CHILD = {"sv": "barn", "nb": "barn", "en": "child"}
MUNICIPALITY = {
    "identifier": {"kind": "hsa-id", "value": "SE2120000670-1001"},
    "name": "Ljungby kommun hemtjänst",
    "kind": "municipality",
}


def example_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return data


def contract_of(data: dict[str, Any]) -> Contract:
    return Contract.model_validate(data)


def rich_data() -> dict[str, Any]:
    """The example with a relative, a relative's and a municipality's activity besides."""
    data = example_data()
    data["relatives"] = [DAUGHTER]
    data["activities"] += [
        {
            "key": "drive",
            "owner": "relative",
            "category": "other",
            "description": "Skjutsar till återbesöken",
            "relative": "daughter",
        },
        {
            "key": "home-help",
            "owner": "municipality",
            "category": "other",
            "description": "Hjälp med städning två veckor",
            "organization": MUNICIPALITY,
            "schedule": {"frequency": 1, "period": 2, "unit": "wk"},
        },
    ]
    return data


def render(contract: Contract, language: Language = "sv") -> ET.Element:
    return ET.fromstring(narrative(contract, language))


def local(element: ET.Element) -> str:
    return element.tag.removeprefix(XHTML)


def find_all(root: ET.Element, name: str) -> list[ET.Element]:
    return list(root.iter(XHTML + name))


def text(element: ET.Element) -> str:
    return "".join(element.itertext())


def headings(root: ET.Element) -> list[str]:
    return [text(h2) for h2 in find_all(root, "h2")]


def section_items(root: ET.Element, heading: str) -> list[str]:
    """The text of each item of the list that follows ``heading``."""
    children = list(root)
    for index, child in enumerate(children):
        if local(child) == "h2" and text(child) == heading:
            listing = children[index + 1]
            assert local(listing) == "ul"
            return [text(li) for li in listing]
    raise AssertionError(f"no section {heading!r}")


def all_elements(root: ET.Element) -> Iterator[ET.Element]:
    yield from root.iter()


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_narrative_is_xhtml_with_the_languages_headings(language: Language) -> None:
    labels = LABELS[language]

    root = render(contract_of(example_data()), language)

    assert root.tag == f"{XHTML}div"
    assert root.attrib == {"lang": language, "class": "patient-contract"}
    assert [text(h1) for h1 in find_all(root, "h1")] == [
        f"{labels['contract']}: Knäprotesoperation och rehabilitering"
    ]
    assert headings(root) == [labels[key] for key, _ in SECTIONS]
    bold = [text(b) for b in find_all(root, "b")]
    for key in ("patient", "responsible", "status", "period", "agreed_by"):
        assert labels[key] in bold, key


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_narrative_holds_the_contracts_text(language: Language) -> None:
    labels = LABELS[language]
    contract = contract_of(example_data())

    root = render(contract, language)

    activities = section_items(root, labels["agreement"])
    assert len(activities) == len(contract.activities)
    for item, activity in zip(activities, contract.activities, strict=True):
        assert activity.description in item
    assert section_items(root, labels["goals"]) == [g.description for g in contract.goals]
    assert section_items(root, labels["resources"]) == list(contract.patient_resources)
    assert section_items(root, labels["wishes"]) == list(contract.wishes)
    (care_contact,) = section_items(root, labels["care_contacts"])
    assert "Maria Nilsson" in care_contact
    assert labels["requested"] in care_contact
    assert f"{labels['reach']}: Ring vardagar 8-10, eller skriv via 1177." in care_contact
    times = section_items(root, labels["agreed_times"])
    assert times[0].startswith("2026-11-20T09:00:00+01:00 \u2013 2026-11-20T09:45:00+01:00: ")
    assert "Preoperativt besök" in times[0]
    assert "Återbesök sex veckor efter operationen" in times[1]
    assert section_items(root, labels["team"]) == [
        "Jonas Berg, Ortopedmottagningen Ljungby lasarett"
    ]
    everything = text(root)
    assert "Tolvan Tolvansson" in everything
    assert "Eva Lind, Ortopedmottagningen Ljungby lasarett" in everything
    assert "2026-11-02 \u2013 2027-05-31" in everything


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_patients_own_tasks_appear_as_the_patients(language: Language) -> None:
    labels = LABELS[language]
    owner = PATIENT_OWNER[language]
    every = f"2 {labels['times']} {labels['per']} {UNITS['d'][language]}"

    root = render(contract_of(example_data()), language)

    exercise, walk, surgery = section_items(root, labels["agreement"])
    assert exercise == (
        f"{owner}: Gör knäövningarna från fysioterapeuten ({every}) [2026-11-02 \u2013 2027-02-28]"
    )
    assert walk == f"{owner}: Promenera 20 minuter varje dag"
    assert surgery == "Ortopedmottagningen Ljungby lasarett: Operation: total knäprotes höger knä"
    # Each item starts with its owner in bold; the agreement is the first list.
    owners = [text(li[0]) for li in find_all(root, "ul")[0] if local(li[0]) == "b"]
    assert owners == [owner, owner, "Ortopedmottagningen Ljungby lasarett"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_relatives_and_municipalities_appear_by_name(language: Language) -> None:
    labels = LABELS[language]

    root = render(contract_of(rich_data()), language)

    activities = section_items(root, labels["agreement"])
    assert "Anna Tolvansson: Skjutsar till återbesöken" in activities
    every = f"1 {labels['times']} {labels['per']} 2 {UNITS['wk'][language]}"
    assert f"Ljungby kommun hemtjänst: Hjälp med städning två veckor ({every})" in activities
    assert f"Anna Tolvansson ({CHILD[language]})" in section_items(root, labels["team"])


@pytest.mark.parametrize(
    "path",
    [
        ("title",),
        ("patient", "name", "family"),
        ("activities", 0, "description"),
        ("goals", 1, "description"),
        ("patient_resources", 0),
        ("wishes", 0),
        ("care_contacts", 0, "how_to_reach"),
        ("agreed_times", 1, "description"),
        ("professionals", 0, "name", "given", 0),
        ("relatives", 0, "name", "family"),
    ],
    ids=lambda path: ".".join(map(str, path)),
)
def test_text_is_escaped(path: tuple[str | int, ...]) -> None:
    data = rich_data()
    node: Any = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = HOSTILE

    output = narrative(contract_of(data), "en")
    root = ET.fromstring(output)

    assert not [e for e in all_elements(root) if local(e).lower() == "script"]
    assert "<script" not in output
    assert HOSTILE in text(root)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("variant", ["example", "rich", "hostile"])
def test_only_fhir_narrative_elements_and_attributes_appear(
    language: Language, variant: str
) -> None:
    data = rich_data() if variant != "example" else example_data()
    if variant == "hostile":
        data["title"] = data["activities"][0]["description"] = HOSTILE
        data["wishes"] = ['<img src="x" onerror="alert(1)"/>', "<a href='javascript:x'>y</a>"]

    output = narrative(contract_of(data), language)
    root = ET.fromstring(output)

    for element in all_elements(root):
        assert element.tag.startswith(XHTML), element.tag
        assert local(element) in FHIR_ELEMENTS, element.tag
        assert set(element.attrib) <= ({"lang", "class"} if element is root else set()), (
            element.attrib
        )
    # ElementTree folds xmlns into the tags, so the attributes are also read off the text.
    assert set(re.findall(r"<[^>]*?\s([\w:.-]+)\s*=", output)) <= {"xmlns", "lang", "class"}
    assert not [e for e in all_elements(root) if local(e) in {"img", "a"}]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("key", "field"), SECTIONS, ids=[key for key, _ in SECTIONS])
def test_an_empty_section_is_left_out(language: Language, key: str, field: str) -> None:
    labels = LABELS[language]
    data = example_data()
    data[field] = []

    root = render(contract_of(data), language)

    assert labels[key] not in headings(root)
    assert headings(root) == [labels[k] for k, f in SECTIONS if f != field]
    assert all(len(ul) > 0 for ul in find_all(root, "ul"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_bare_draft_has_no_sections_and_no_agreements(language: Language) -> None:
    labels = LABELS[language]
    data = example_data()
    data["status"] = "draft"
    for _, field in SECTIONS:
        data[field] = []
    data["agreements"] = []
    del data["period"]

    root = render(contract_of(data), language)

    assert find_all(root, "h2") == []
    assert find_all(root, "ul") == []
    (paragraph,) = find_all(root, "p")
    assert [text(b) for b in find_all(paragraph, "b")] == [
        labels["patient"],
        labels["responsible"],
        labels["status"],
    ]


def test_restricted_activities_goals_and_times_stay_out_of_the_narrative() -> None:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["activities"][0]["confidentiality"] = "restricted"
    data["goals"][0]["confidentiality"] = "restricted"
    data["agreed_times"][0]["confidentiality"] = "very-restricted"
    contract = Contract.model_validate(data)

    div = narrative(contract, "sv")

    assert data["activities"][0]["description"] not in div
    assert data["goals"][0]["description"] not in div
    assert data["agreed_times"][0]["description"] not in div
    assert data["goals"][1]["description"] in div
    assert data["activities"][1]["description"] in div
