"""FHIR bodies repeating a key or holding NaN: 400 OperationOutcomes with an issue and FHIRPath
expression per place, and nothing written; on its own table and against the real HAPI.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.types import Message

from fhir_service.api.fhir.bodies import BodyError, fhir_body, json_refusal
from fhir_service.api.json_bodies import LISTED_AT_MOST, StrictJsonError, loads_strict
from fhir_service.contract import Contract
from fhir_service.mapping import urls
from fhir_service.mapping.to_fhir import contract_to_bundle
from tests.auth import TestIssuer
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
UNIT = "hsa-id|SE2321000065-1254"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
REPEATED = "__repeated_key__"


def with_repeated_key(data: dict[str, Any], path: list[str | int], key: str, value: Any) -> str:
    """``data`` as JSON text whose object at ``path`` holds ``key`` a second time, as ``value``."""
    target: Any = data
    for step in path:
        target = target[step]
    target[REPEATED] = value
    return json.dumps(data).replace(json.dumps(REPEATED), json.dumps(key), 1)


def _refusal(text: str) -> Any:
    with pytest.raises(StrictJsonError) as refused:
        loads_strict(text)
    return json.loads(json_refusal(refused.value).body)


# --- the answer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "issues"),
    [
        (
            '{"resourceType": "Bundle", "entry": [{"resource": {"subject": {}, "subject": {}}}]}',
            [("duplicate key 'subject'", "Bundle.entry[0].resource.subject")],
        ),
        (
            '{"resourceType": "Goal", "note": [{"text": "a"}, {"text": "a", "text": "b"}],'
            ' "_start": {"extension": [{"valueDecimal": NaN}]}}',
            [
                ("duplicate key 'text'", "Goal.note[1].text"),
                ("NaN is not a JSON value", "Goal._start.extension[0].valueDecimal"),
            ],
        ),
        (
            '{"resourceType": "Goal", "my key": 1, "my key": 2, "a`b": 1, "a`b": 2}',
            [
                ("duplicate key 'my key'", "Goal.`my key`"),
                ("duplicate key 'a`b'", "Goal.`a\\`b`"),
            ],
        ),
        ('{"id": 1, "id": 2}', [("duplicate key 'id'", "Resource.id")]),
        (
            '{"resourceType": "Bundle", "resourceType": "x y"}',
            [("duplicate key 'resourceType'", "Resource.resourceType")],
        ),
        ("[Infinity]", [("Infinity is not a JSON value", "Resource[0]")]),
    ],
)
def test_each_place_is_one_issue_with_its_fhirpath(
    text: str, issues: list[tuple[str, str]]
) -> None:
    outcome = _refusal(text)

    assert outcome["resourceType"] == "OperationOutcome"
    assert [
        (issue["severity"], issue["code"], issue["diagnostics"], issue["expression"])
        for issue in outcome["issue"]
    ] == [("error", "structure", diagnostics, [where]) for diagnostics, where in issues]


def test_a_flood_of_repeats_lists_the_first_and_counts_the_rest() -> None:
    pairs = ", ".join(f'"k{n}": 1, "k{n}": 2' for n in range(LISTED_AT_MOST + 50))

    outcome = _refusal(f'{{"resourceType": "Goal", {pairs}}}')

    assert len(outcome["issue"]) == LISTED_AT_MOST + 1
    assert outcome["issue"][0]["expression"] == ["Goal.k0"]
    assert outcome["issue"][-1]["diagnostics"] == "50 more places are not listed"


async def test_fhir_body_refuses_on_its_own_too_naming_each_place() -> None:
    sent = [{"type": "http.request", "body": b'{"resourceType": "Goal", "a": 1, "a": 2}'}]

    async def receive() -> Message:
        return sent.pop() if sent else {"type": "http.disconnect"}

    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/fhir/Goal",
            "headers": [(b"content-type", b"application/fhir+json")],
        },
        receive,
    )

    with pytest.raises(BodyError) as refused:
        await fhir_body(request)

    assert (refused.value.status, refused.value.code) == (400, "structure")
    assert refused.value.issues == (("duplicate key 'a'", "Goal.a"),)
    assert "duplicate key 'a' at Goal.a" in str(refused.value)


# --- the endpoint, against the real HAPI ------------------------------------------------------


@pytest.fixture
def ehr(issuer: TestIssuer) -> dict[str, str]:
    return {**issuer.headers("ehr", organization=UNIT), **FHIR_JSON}


def _bundle() -> tuple[str, dict[str, Any]]:
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"body-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    contract = Contract.model_validate(data)
    return contract.id, contract_to_bundle(contract, new=True)


def _careplans(hapi_url: str, contract_id: str) -> int:
    found = httpx.get(
        f"{hapi_url}/CarePlan",
        params={"identifier": f"{urls.ID_CONTRACT}|{contract_id}", "_summary": "count"},
    )
    return int(found.json()["total"])


def test_a_transaction_whose_careplan_names_two_subjects_is_refused_and_nothing_written(
    service: TestClient, ehr: dict[str, str], conformance_loaded: str
) -> None:
    contract_id, bundle = _bundle()
    at = next(
        i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "CarePlan"
    )
    careplan = bundle["entry"][at]["resource"]
    # Someone else first, the contract's patient last: a lenient reader stores the last.
    subject = careplan["subject"]
    careplan["subject"] = {"reference": "Patient/someone-else"}

    text = with_repeated_key(bundle, ["entry", at, "resource"], "subject", subject)
    response = service.post("/fhir", content=text, headers=ehr)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "structure",
                "diagnostics": "duplicate key 'subject'",
                "expression": [f"Bundle.entry[{at}].resource.subject"],
            }
        ],
    }
    assert _careplans(conformance_loaded, contract_id) == 0
    assert service.get(f"/contracts/{contract_id}", headers=ehr).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/fhir/Goal", "Goal"),
        ("PUT", "/fhir/Goal/{id}", "Goal"),
        ("PUT", "/fhir/CarePlan/{id}", "CarePlan"),
        ("POST", "/fhir/Appointment/$book", "Appointment"),
    ],
)
def test_one_record_repeating_a_key_is_refused_on_every_write(
    service: TestClient, ehr: dict[str, str], method: str, path: str, kind: str
) -> None:
    record_id = f"body-{uuid.uuid4().hex[:16]}"
    record = {"resourceType": kind, "id": record_id, "status": "proposed"}

    response = service.request(
        method,
        path.format(id=record_id),
        content=with_repeated_key(record, [], "status", "active"),
        headers={**ehr, "If-Match": 'W/"1"'},
    )

    assert response.status_code == 400, response.text
    assert response.json()["issue"] == [
        {
            "severity": "error",
            "code": "structure",
            "diagnostics": "duplicate key 'status'",
            "expression": [f"{kind}.status"],
        }
    ]
    assert service.get(f"/fhir/{kind}/{record_id}", headers=ehr).status_code == 404
