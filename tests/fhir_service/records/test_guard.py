"""What the FHIR guard lets through names nothing it withholds: a CarePlan shown to a walled reader
(the patient, a unit taking part) names none of the goals and times withheld from them, and says
it is a subset; the responsible unit gets it as stored. Against the real HAPI, and `subset_naming`
on its own.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_service.records.guard import SUBSETTED, subset_naming
from tests.auth import TestIssuer
from tests.support import unique_personnummer

EXAMPLE = (
    Path(__file__).parents[3] / "profiles" / "examples" / "contracts" / "stroke-rehabilitation.json"
)
CONTRACT_SYSTEM = "http://fhir.patient-contracts.org/identifier/contract"
PERSONNUMMER_SYSTEM = "http://electronichealth.se/identifier/personnummer"
MUNICIPALITY = "hsa-id|SE2120000662-1001"


def _unit(contract: dict[str, Any]) -> str:
    identifier = contract["responsible_clinician"]["organization"]["identifier"]
    return f"{identifier['kind']}|{identifier['value']}"


@pytest.fixture(scope="module")
def world(service: TestClient, issuer: TestIssuer) -> dict[str, Any]:
    """An agreed stroke contract (the municipality takes part) with a very-restricted goal,
    agreed time and activity (written in the CarePlan itself), and the FHIR references of what
    the patient may and may not see.
    """
    personnummer = unique_personnummer()
    marker = f"walled-{uuid.uuid4().hex}"
    contract: dict[str, Any] = json.loads(EXAMPLE.read_text("utf-8"))
    contract["id"] = f"guard-{uuid.uuid4().hex[:16]}"
    contract["patient"]["identifier"]["value"] = personnummer
    for part in (contract["goals"][1], contract["agreed_times"][2], contract["activities"][1]):
        part["confidentiality"] = "very-restricted"
        part["description"] = f"{marker} {part['description']}"
    unit = issuer.headers("ehr", organization=_unit(contract))
    created = service.post("/contracts", json=contract, headers=unit)
    assert created.status_code == 201, created.text
    found = service.get(
        "/fhir/CarePlan",
        params=[
            ("identifier", f"{CONTRACT_SYSTEM}|{contract['id']}"),
            ("_include", "CarePlan:goal"),
            ("_include", "CarePlan:activity-reference"),
        ],
        headers=unit,
    )
    assert found.status_code == 200, found.text
    records = [e["resource"] for e in found.json()["entry"]]
    named = {
        f"{r['resourceType']}/{r['id']}": bool(r.get("meta", {}).get("security"))
        for r in records
        if r["resourceType"] in ("Goal", "Appointment")
    }
    careplan = next(r for r in records if r["resourceType"] == "CarePlan")
    return {
        "contract": contract,
        "careplan": careplan["id"],
        "marker": marker,
        "withheld": sorted(ref for ref, labelled in named.items() if labelled),
        "open": sorted(ref for ref, labelled in named.items() if not labelled),
        "patient": issuer.headers("patient", patient=f"personnummer|{personnummer}"),
        "unit": unit,
        "municipality": issuer.headers("ehr", organization=MUNICIPALITY),
        "plan": {"patient": f"{PERSONNUMMER_SYSTEM}|{personnummer}"},
    }


def _careplans(answer: Any) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if body["resourceType"] == "CarePlan":
        return [body]
    return [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "CarePlan"]


def _names(careplan: dict[str, Any]) -> set[str]:
    references = [g["reference"] for g in careplan.get("goal", [])]
    references += [a["reference"]["reference"] for a in careplan["activity"] if "reference" in a]
    return set(references)


def _subsetted(careplan: dict[str, Any]) -> bool:
    return SUBSETTED in careplan.get("meta", {}).get("tag", [])


def _carries(text: str, reference: str) -> bool:
    # Goal/12 is not in Goal/123.
    return re.search(rf"{re.escape(reference)}(?![A-Za-z0-9\-.])", text) is not None


def test_the_world_has_withheld_goals_and_times(world: dict[str, Any]) -> None:
    assert {r.split("/")[0] for r in world["withheld"]} == {"Goal", "Appointment"}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/fhir/CarePlan/{careplan}", {}),
        ("/fhir/CarePlan/{careplan}/_history/1", {}),
        ("/fhir/CarePlan/{careplan}/_history", {}),
        ("/fhir/CarePlan", {"_include": "CarePlan:goal"}),
        ("/fhir/Goal", {"_revinclude": "CarePlan:goal"}),
        ("/fhir/CarePlan/$coherent-plan", None),
    ],
    ids=["read", "vread", "history", "include", "revinclude", "coherent-plan"],
)
def test_a_patient_is_shown_a_careplan_naming_nothing_withheld_from_them(
    service: TestClient, world: dict[str, Any], path: str, params: dict[str, str] | None
) -> None:
    answer = service.get(
        path.format(careplan=world["careplan"]),
        params=world["plan"] if params is None else params,
        headers=world["patient"],
    )

    careplans = _careplans(answer)
    assert [c["id"] for c in careplans] == [world["careplan"]]
    assert _names(careplans[0]) == set(world["open"])
    assert _subsetted(careplans[0])
    assert [r for r in world["withheld"] if _carries(answer.text, r)] == []
    # The restricted activity is neither in the CarePlan's activities nor in its narrative.
    assert world["marker"] not in answer.text
    shown = [a["detail"]["description"] for a in careplans[0]["activity"] if "detail" in a]
    assert len(shown) == len(world["contract"]["activities"]) - 1


def test_the_subset_keeps_the_version_it_was_cut_from(
    service: TestClient, world: dict[str, Any]
) -> None:
    path = f"/fhir/CarePlan/{world['careplan']}"

    mine = service.get(path, headers=world["patient"])
    theirs = service.get(path, headers=world["unit"])

    assert mine.headers["etag"] == theirs.headers["etag"]
    assert mine.json()["meta"]["versionId"] == theirs.json()["meta"]["versionId"]


def test_a_unit_taking_part_is_shown_the_plan_as_the_patient_is(
    service: TestClient, world: dict[str, Any]
) -> None:
    answer = service.get(
        "/fhir/CarePlan/$coherent-plan", params=world["plan"], headers=world["municipality"]
    )

    (careplan,) = _careplans(answer)
    assert _names(careplan) == set(world["open"])
    assert _subsetted(careplan)
    assert [r for r in world["withheld"] if _carries(answer.text, r)] == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/fhir/CarePlan/{careplan}", {}),
        # The unit has many contracts: this one is asked for.
        ("/fhir/CarePlan", {"identifier": "{contract}", "_include": "CarePlan:goal"}),
        ("/fhir/CarePlan/$coherent-plan", None),
    ],
    ids=["read", "include", "coherent-plan"],
)
def test_the_responsible_unit_is_shown_the_careplan_as_stored(
    service: TestClient, world: dict[str, Any], path: str, params: dict[str, str] | None
) -> None:
    contract = f"{CONTRACT_SYSTEM}|{world['contract']['id']}"
    asked = {k: v.format(contract=contract) for k, v in (params or {}).items()}
    answer = service.get(
        path.format(careplan=world["careplan"]),
        params=world["plan"] if params is None else asked,
        headers=world["unit"],
    )

    (careplan,) = _careplans(answer)
    assert _names(careplan) == set(world["open"] + world["withheld"])
    assert not _subsetted(careplan)


CAREPLAN: dict[str, Any] = {
    "resourceType": "CarePlan",
    "id": "1",
    "meta": {"versionId": "3", "tag": [{"system": "urn:example", "code": "kept"}]},
    "text": {"status": "generated", "div": "<div>...</div>"},
    "goal": [{"reference": "Goal/1"}, {"reference": "Goal/2"}],
    "careTeam": [{"reference": "CareTeam/1"}],
    "activity": [
        {"id": "walk", "detail": {"status": "scheduled"}},
        {"reference": {"reference": "Appointment/1"}},
        {"reference": {"reference": "Appointment/2/_history/4"}},
    ],
}


@pytest.mark.parametrize(
    ("shown", "goals", "teams", "activities"),
    [
        ({"Goal/1", "CareTeam/1", "Appointment/1"}, ["Goal/1"], ["CareTeam/1"], 2),
        (
            {"Goal/1", "Goal/2", "CareTeam/1", "Appointment/2"},
            ["Goal/1", "Goal/2"],
            ["CareTeam/1"],
            2,
        ),
        ({"Appointment/1"}, [], [], 2),
        (set(), [], [], 1),
    ],
    ids=["a goal and a time", "a time by its version", "all but a time", "everything named"],
)
def test_subset_naming_leaves_out_what_is_not_shown_and_says_so(
    shown: set[str], goals: list[str], teams: list[str], activities: int
) -> None:
    original = copy.deepcopy(CAREPLAN)

    subset = subset_naming(CAREPLAN, shown)

    assert original == CAREPLAN
    # FHIR allows no empty lists: what has nothing left is gone.
    assert subset.get("goal", "absent") == ([{"reference": r} for r in goals] or "absent")
    assert subset.get("careTeam", "absent") == ([{"reference": r} for r in teams] or "absent")
    assert len(subset["activity"]) == activities
    assert subset["activity"][0] == CAREPLAN["activity"][0]
    assert subset["meta"]["versionId"] == "3"
    assert subset["meta"]["tag"] == [*CAREPLAN["meta"]["tag"], SUBSETTED]
    assert subset["text"] == CAREPLAN["text"]


def test_subset_naming_returns_what_names_only_shown_records_as_it_is() -> None:
    everything = {"Goal/1", "Goal/2", "CareTeam/1", "Appointment/1", "Appointment/2"}
    goal = {"resourceType": "Goal", "id": "1"}

    assert subset_naming(CAREPLAN, everything) is CAREPLAN
    assert subset_naming(goal, set()) is goal


@pytest.mark.parametrize("code", ["R", "V"])
def test_subset_naming_leaves_out_an_activity_labelled_restricted(code: str) -> None:
    label = {
        "url": "http://fhir.patient-contracts.org/StructureDefinition/activity-confidentiality",
        "valueCoding": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            "code": code,
        },
    }
    hidden = {"id": "risk", "detail": {"extension": [label], "status": "scheduled"}}
    careplan = {**CAREPLAN, "activity": [*CAREPLAN["activity"], hidden]}
    everything = {"Goal/1", "Goal/2", "CareTeam/1", "Appointment/1", "Appointment/2"}

    subset = subset_naming(careplan, everything)

    assert subset["activity"] == CAREPLAN["activity"]
    assert SUBSETTED in subset["meta"]["tag"]
