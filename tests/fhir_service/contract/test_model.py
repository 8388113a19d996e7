"""The contract model: the example parses with normalized identifiers, bad input is refused.

Each refusal is a pydantic ``ValidationError`` with exactly one error, at the field the caller
has to correct (``loc``) and with a message that says what is wrong; and a parsed contract
cannot be changed in place.
"""

# The tables below keep one case a line, however long.
# ruff: noqa: E501

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError

from fhir_service.contract import (
    ActivityOwner,
    AgreementParty,
    Contract,
    ContractStatus,
)
from fhir_service.contract.identifiers import IdentifierKind

EXAMPLE = Path(__file__).parents[3] / "profiles/examples/contracts/knee-replacement.json"

Data = dict[str, Any]
Mutation = Callable[[Data], None]
Loc = tuple[str | int, ...]

CLINICIAN_HSA = "SE2321000065-7331"
UNIT_HSA = "SE2321000065-1003"
UNIT = {
    "identifier": {"kind": "hsa-id", "value": UNIT_HSA},
    "name": "Ortopedmottagningen Ljungby lasarett",
    "kind": "care-unit",
}
DAUGHTER = {
    "key": "daughter",
    "name": {"family": "Tolvansson", "given": ["Anna"]},
    "relationship": "CHILD",
}
CONTROL_CHARACTERS = ["\x00", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"]


def example_data() -> Data:
    """A fresh deep copy of the knee-replacement example as plain JSON data."""
    return cast(Data, json.loads(EXAMPLE.read_text(encoding="utf-8")))


def parse(data: Data) -> Contract:
    """Parse as the API does: from JSON text."""
    return Contract.model_validate_json(json.dumps(data))


def _steps(path: str) -> list[str | int]:
    return [int(step) if step.isdigit() else step for step in path.split(".")]


def _parent(data: Data, path: str) -> tuple[Any, str | int]:
    *head, last = _steps(path)
    node: Any = data
    for step in head:
        node = node[step]
    return node, last


def put(path: str, value: Any) -> Mutation:
    """Set the value at a dotted path such as ``activities.0.description``."""

    def mutate(data: Data) -> None:
        parent, last = _parent(data, path)
        parent[last] = copy.deepcopy(value)

    return mutate


def drop(path: str) -> Mutation:
    """Remove the key (or list item) at a dotted path."""

    def mutate(data: Data) -> None:
        parent, last = _parent(data, path)
        del parent[last]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    """Apply several mutations in order."""

    def mutate(data: Data) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


def mutated(mutation: Mutation) -> Data:
    data = example_data()
    mutation(data)
    return data


# (description, mutation, loc, message): loc is the error's exact location, message a regular
# expression searched for in the error's message. The checks that compare several parts of the
# contract (keys, relatives, agreements, shared records) run on the whole contract, so pydantic
# reports them at the root, loc (); their message names the part instead.
# fmt: off
INVALID: list[tuple[str, Mutation, Loc, str]] = [
    ("personnummer check digit", put("patient.identifier.value", "19121212-1213"), ("patient", "identifier", "value"), "invalid personnummer '19121212-1213': check digit is 3, expected 2"),
    ("personnummer short form", put("patient.identifier.value", "121212-1212"), ("patient", "identifier", "value"), "use the 12-digit form YYYYMMDDNNNN"),
    ("hsa-id for a patient", put("patient.identifier", {"kind": "hsa-id", "value": CLINICIAN_HSA}), ("patient", "identifier"), "hsa-id does not identify a patient; use one of d-nummer, fodselsnummer, other, personnummer, samordningsnummer"),
    ("hpr-nummer for an organization", put("responsible_clinician.organization.identifier", {"kind": "hpr-nummer", "value": "1234"}), ("responsible_clinician", "organization", "identifier"), "hpr-nummer does not identify an? organization; use one of hsa-id, organisasjonsnummer"),
    ("personnummer for a professional", put("professionals.0.identifier", {"kind": "personnummer", "value": "191212121212"}), ("professionals", 0, "identifier"), "personnummer does not identify a professional; use one of hpr-nummer, hsa-id"),
    ("unknown identifier kind", put("patient.identifier.kind", "passport"), ("patient", "identifier", "kind"), "Input should be 'personnummer', 'samordningsnummer', 'hsa-id'"),
    ("control character in a description", put("activities.0.description", "Gör\x07 övningarna"), ("activities", 0, "description"), "^Value error, contains control characters$"),
    ("control character in a wish", put("wishes.0", "Tider\x00 på förmiddagen"), ("wishes", 0), "contains control characters"),
    ("empty title", put("title", ""), ("title",), "String should have at least 1 character"),
    ("blank title", put("title", " \t\n "), ("title",), "String should have at least 1 character"),
    ("title too long", put("title", "x" * 4001), ("title",), "String should have at most 4000 characters"),
    ("care unit's activity without organization", drop("activities.2.organization"), ("activities", 2), "organization is required when the owner is the care unit or the municipality"),
    ("municipality's activity without organization", put("activities.1.owner", "municipality"), ("activities", 1), "organization is required when the owner is the care unit or the municipality"),
    ("patient's activity with an organization", put("activities.1.organization", UNIT), ("activities", 1), "organization is required .* and only then"),
    ("relative's activity without relative", put("activities.1.owner", "relative"), ("activities", 1), "relative is required when the owner is a relative"),
    ("activity of an unknown relative", both(put("relatives", [DAUGHTER]), put("activities.1.owner", "relative"), put("activities.1.relative", "son")), (), "^Value error, activity walk: no relative with key son$"),
    ("duplicate activity keys", put("activities.1.key", "knee-exercise"), (), "activities: duplicate key knee-exercise"),
    ("duplicate goal keys", put("goals.1.key", "stairs"), (), "goals: duplicate key stairs"),
    ("activity key with a space", put("activities.0.key", "knee exercise"), ("activities", 0, "key"), "String should match pattern"),
    ("period ends before it starts", put("period", {"start": "2027-05-31", "end": "2026-11-02"}), ("period",), "end is before start"),
    ("empty period", put("activities.0.period", {}), ("activities", 0, "period"), "a period needs a start or an end"),
    ("booked time without start", drop("agreed_times.0.start"), ("agreed_times", 0), "a booked time needs start and end"),
    ("booked time without end", drop("agreed_times.0.end"), ("agreed_times", 0), "a booked time needs start and end"),
    ("fulfilled time without times", put("agreed_times.1.status", "fulfilled"), ("agreed_times", 1), "a fulfilled time needs start and end"),
    ("time ends as it starts", put("agreed_times.0.end", "2026-11-20T09:00:00+01:00"), ("agreed_times", 0), "end is not after start"),
    ("time ends as it starts, other offset", put("agreed_times.0.end", "2026-11-20T08:00:00Z"), ("agreed_times", 0), "end is not after start"),
    ("time ends before it starts", put("agreed_times.0.end", "2026-11-20T08:59:00+01:00"), ("agreed_times", 0), "end is not after start"),
    ("naive start", put("agreed_times.0.start", "2026-11-20T09:00:00"), ("agreed_times", 0, "start"), "Input should have timezone info"),
    ("naive agreement time", put("agreements.0.agreed_at", "2026-11-02T10:15:00"), ("agreements", 0, "agreed_at"), "Input should have timezone info"),
    ("agreed without the clinician", drop("agreements.1"), (), "an agreed contract needs the agreement of: responsible-clinician$"),
    ("agreed without the patient", drop("agreements.0"), (), "an agreed contract needs the agreement of: patient$"),
    ("agreed without agreements", put("agreements", []), (), "needs the agreement of: patient, responsible-clinician$"),
    ("draft with agreements", put("status", "draft"), (), "a draft contract carries no agreements"),
    ("revised with agreements", put("status", "revised"), (), "a revised contract carries no agreements"),
    ("one party agreeing twice", put("agreements.1.party", "patient"), (), "agreements: duplicate key patient"),
    ("one professional, two names", put("agreed_times.0.professional.name.family", "Lindqvist"), (), f"^Value error, professional hsa-id {CLINICIAN_HSA} appears with different details$"),
    ("one professional, two roles at a unit", put("agreed_times.0.professional.role", "surgeon"), (), f"professional at one organization hsa-id {CLINICIAN_HSA} appears with different details"),
    ("one organization, two names", put("activities.2.organization.name", "Ljungby lasarett"), (), f"^Value error, organization hsa-id {UNIT_HSA} appears with different details$"),
    ("one organization, two kinds", put("agreed_times.1.organization.kind", "region"), (), f"organization hsa-id {UNIT_HSA} appears with different details"),
    ("a unit other than the clinician's", put("responsible_unit", {**UNIT, "identifier": {"kind": "hsa-id", "value": "SE2321000065-9999"}}), (), "^Value error, responsible_unit: is not the responsible clinician's organization$"),
    ("neither clinician nor unit", drop("responsible_clinician"), ("responsible_unit",), "^Field required$"),
    ("unknown field", put("colour", "red"), ("colour",), "^Extra inputs are not permitted$"),
    ("unknown nested field", put("patient.name.nickname", "Tolle"), ("patient", "name", "nickname"), "^Extra inputs are not permitted$"),
    ("unknown status", put("status", "active"), ("status",), "Input should be 'draft', 'agreed', 'revised'"),
]
# fmt: on


def test_the_example_parses_with_its_parts() -> None:
    contract = Contract.model_validate_json(EXAMPLE.read_text(encoding="utf-8"))

    assert contract.id == "kronoberg-ortopedi-knee-0001"
    assert contract.status is ContractStatus.AGREED
    assert [a.owner for a in contract.activities] == [
        ActivityOwner.PATIENT,
        ActivityOwner.PATIENT,
        ActivityOwner.CARE_UNIT,
    ]
    assert [g.key for g in contract.goals] == ["stairs", "garden"]
    assert {a.party for a in contract.agreements} == set(AgreementParty)
    # One unit appears in six places; it is one organization.
    assert [o.identifier.value for o in contract.organizations()] == [UNIT_HSA]
    assert len(contract.all_professionals()) == 4


def test_the_examples_identifiers_come_out_normalized() -> None:
    contract = Contract.model_validate_json(EXAMPLE.read_text(encoding="utf-8"))

    assert contract.patient.identifier.kind is IdentifierKind.PERSONNUMMER
    assert contract.patient.identifier.value == "191212121212"
    assert contract.responsible_clinician.identifier.value == CLINICIAN_HSA


# (path of an identifier, kind, value as given, canonical value)
# fmt: off
NORMALIZED = [
    ("patient.identifier", "personnummer", " 19121212-1212 ", "191212121212"),
    ("patient.identifier", "samordningsnummer", "19701063-2391", "197010632391"),
    ("patient.identifier", "fodselsnummer", "01010112377", "01010112377"),
    ("patient.identifier", "d-nummer", " 41010112360", "41010112360"),
    ("responsible_clinician.identifier", "hsa-id", "se2321000065-7331", CLINICIAN_HSA),
    ("professionals.0.identifier", "hpr-nummer", " 012345678 ", "012345678"),
    ("activities.2.organization.identifier", "hsa-id", "se2321000065-1003", UNIT_HSA),
    ("care_contacts.0.professional.organization.identifier", "organisasjonsnummer", "974760673", "974760673"),
]
# fmt: on


@pytest.mark.parametrize(("path", "kind", "given", "canonical"), NORMALIZED)
def test_identifiers_are_normalized_wherever_they_appear(
    path: str, kind: str, given: str, canonical: str
) -> None:
    contract = parse(mutated(put(path, {"kind": kind, "value": given})))

    identifier: Any = contract.model_dump()
    for step in _steps(path):
        identifier = identifier[step]
    assert identifier == {"kind": IdentifierKind(kind), "value": canonical}


def test_identifiers_are_compared_in_their_normalized_form() -> None:
    # Lower case here, upper case elsewhere: still the same unit and the same person.
    data = mutated(
        both(
            put("activities.2.organization.identifier.value", UNIT_HSA.lower()),
            put("agreed_times.0.professional.identifier.value", CLINICIAN_HSA.lower()),
        )
    )

    contract = parse(data)

    assert [o.identifier.value for o in contract.organizations()] == [UNIT_HSA]
    assert contract.agreed_times[0].professional is not None
    assert contract.agreed_times[0].professional.identifier == (
        contract.responsible_clinician.identifier
    )


@pytest.mark.parametrize(
    ("description", "mutation", "loc", "message"), INVALID, ids=[case[0] for case in INVALID]
)
def test_bad_input_is_refused_at_the_field_with_a_precise_message(
    description: str, mutation: Mutation, loc: Loc, message: str
) -> None:
    data = mutated(mutation)

    with pytest.raises(ValidationError) as caught:
        parse(data)

    errors = caught.value.errors()
    assert [error["loc"] for error in errors] == [loc], errors
    assert re.search(message, errors[0]["msg"]), errors[0]["msg"]


def test_an_invalid_patient_identifier_names_the_patient_and_the_identifier() -> None:
    with pytest.raises(ValidationError) as caught:
        parse(mutated(put("patient.identifier.value", "19121212-1213")))

    (error,) = caught.value.errors()
    assert "patient" in error["loc"]
    assert "identifier" in error["loc"]
    assert str(caught.value).startswith("1 validation error for Contract\npatient.identifier.value")


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("title", ("title",)),
        ("patient.name.family", ("patient", "name", "family")),
        ("goals.0.description", ("goals", 0, "description")),
        ("care_contacts.0.how_to_reach", ("care_contacts", 0, "how_to_reach")),
        ("patient_resources.0", ("patient_resources", 0)),
    ],
)
def test_control_characters_inside_text_are_refused(character: str, path: str, loc: Loc) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(mutated(put(path, f"Rad ett{character}rad två")))

    (error,) = caught.value.errors()
    assert error["loc"] == loc
    assert error["msg"] == "Value error, contains control characters"


@pytest.mark.parametrize("separator", ["\t", "\n", "\r\n"], ids=repr)
def test_tabs_and_line_breaks_inside_text_are_kept(separator: str) -> None:
    text = f"Rad ett{separator}rad två"

    contract = parse(mutated(put("activities.0.description", f"  {text}\n")))

    assert contract.activities[0].description == text


def test_text_is_trimmed() -> None:
    contract = parse(mutated(put("title", "  Knäprotes \n")))

    assert contract.title == "Knäprotes"


@pytest.mark.parametrize(
    ("path", "attribute", "value"),
    [
        ("", "title", "Ny titel"),
        ("", "status", ContractStatus.DRAFT),
        ("", "agreements", ()),
        ("patient.identifier", "value", "191212121213"),
        ("patient.name", "family", "Andersson"),
        ("activities.0", "description", "Något annat"),
        ("activities.0.schedule", "frequency", 7),
        ("responsible_clinician.organization", "name", "Annan enhet"),
        ("agreed_times.0", "start", None),
    ],
)
def test_models_are_immutable(path: str, attribute: str, value: object) -> None:
    contract = parse(example_data())
    model: Any = contract
    for step in _steps(path) if path else []:
        model = model[step] if isinstance(step, int) else getattr(model, step)
    before = getattr(model, attribute)

    with pytest.raises(ValidationError) as caught:
        setattr(model, attribute, value)

    assert caught.value.errors()[0]["type"] == "frozen_instance"
    assert getattr(model, attribute) == before
    assert contract == parse(example_data())


def test_collections_in_a_contract_are_tuples() -> None:
    contract = parse(example_data())

    for collection in (contract.activities, contract.goals, contract.wishes, contract.agreements):
        assert isinstance(collection, tuple)
    assert isinstance(contract.patient.name.given, tuple)


def test_a_patient_of_another_issuer_names_the_issuer_and_only_a_patient_may() -> None:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    mrn = {"kind": "other", "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}
    data["patient"]["identifier"] = mrn

    contract = Contract.model_validate(data)

    assert contract.patient.identifier.system == mrn["system"]
    for broken in (
        {"kind": "other", "value": "12345"},
        {"kind": "personnummer", "system": "urn:oid:1.2.3", "value": "191212121212"},
        {"kind": "other", "system": "not a uri", "value": "12345"},
    ):
        data["patient"]["identifier"] = broken
        with pytest.raises(ValidationError):
            Contract.model_validate(data)
    data["patient"]["identifier"] = mrn
    data["responsible_clinician"]["identifier"] = mrn
    with pytest.raises(ValidationError, match="does not identify a professional"):
        Contract.model_validate(data)


def test_a_contract_may_name_only_its_unit_and_its_unit_is_its_clinicians_otherwise() -> None:
    data = example_data()
    clinician = data.pop("responsible_clinician")

    unit_only = Contract.model_validate({**data, "responsible_unit": clinician["organization"]})
    named = Contract.model_validate({**data, "responsible_clinician": clinician})

    assert unit_only.responsible_clinician is None
    assert unit_only.responsible_unit == named.responsible_unit == named.organizations()[0]
    assert unit_only.responsible_unit.identifier.value == UNIT_HSA
    assert unit_only.unit_language() == "sv"
    assert len(named.all_professionals()) == len(unit_only.all_professionals()) + 1
