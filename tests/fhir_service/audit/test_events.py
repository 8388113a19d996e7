"""The AuditEvent of an access: BALP's shape for each interaction, caller and outcome, valid R4."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from fhir_service.api.access_rules import RULES, Protected
from fhir_service.audit.events import (
    BALP_PATTERN,
    CLIENT_ID_SYSTEM,
    CONTRACT_OPERATION_SYSTEM,
    SERVICE_NAME,
    audit_event,
)
from fhir_service.audit.records import AccessRecord, Caller, Interaction, Outcome, Touched
from fhir_service.mapping import urls
from fhir_service.mapping.tables import code_table

PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
HSA = "urn:oid:1.2.752.29.4.19"
PATIENT = (PERSONNUMMER, "191212121212")
USER = Caller(
    subject="user-1",
    issuer="https://idp.example/realms/care",
    client_id="ehr-app",
    organization=(HSA, "SE2321000065-T1"),
    address="192.0.2.10",
)
CONTRACT = Touched("CarePlan", identifier=(urls.ID_CONTRACT, "c-1"), reference="CarePlan/42")

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"


def _record(**changes: Any) -> AccessRecord:
    record = AccessRecord(
        id=str(uuid.uuid4()),
        recorded=datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        interaction=Interaction.READ,
        outcome=Outcome.SUCCESS,
        description="read contract",
        caller=USER,
        request_id="req-1",
        method="GET",
        route="/contracts/{contract_id}",
        patients=(PATIENT,),
        entities=(CONTRACT,),
    )
    return dataclasses.replace(record, **changes)


def _codes(codeable: dict[str, Any]) -> list[str]:
    return [c["code"] for c in codeable["coding"]]


def _agent(event: dict[str, Any], code: str) -> dict[str, Any]:
    (agent,) = [a for a in event["agent"] if code in _codes(a["type"])]
    return agent


def _entities(event: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in event["entity"] if e.get("role", {}).get("code") == role]


@pytest.mark.parametrize(
    ("interaction", "profile", "action", "user_type"),
    [
        (Interaction.READ, "Read", "R", "IRCP"),
        (Interaction.VREAD, "Read", "R", "IRCP"),
        (Interaction.HISTORY, "Read", "R", "IRCP"),
        (Interaction.SEARCH, "Query", "E", "IRCP"),
        (Interaction.CREATE, "Create", "C", "AUT"),
        (Interaction.UPDATE, "Update", "U", "AUT"),
        (Interaction.OPERATION, "Update", "U", "AUT"),
        (Interaction.DELETE, "Delete", "D", "AUT"),
    ],
)
def test_each_interaction_has_its_balp_profile_subtype_action_and_user_role(
    interaction: Interaction, profile: str, action: str, user_type: str
) -> None:
    event = audit_event(_record(interaction=interaction))

    assert event["meta"] == {"tag": [{"system": BALP_PATTERN, "code": f"IHE.BasicAudit.{profile}"}]}
    assert event["type"]["code"] == "rest"
    assert event["subtype"] == [
        {
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": interaction.value,
            "display": interaction.value,
        }
    ]
    assert event["action"] == action
    assert _codes(event["agent"][0]["type"]) == [user_type]


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(Outcome.SUCCESS, "0"), (Outcome.MINOR_FAILURE, "4"), (Outcome.SERIOUS_FAILURE, "8")],
)
def test_the_outcome_is_its_code_and_the_description_says_what_happened(
    outcome: Outcome, code: str
) -> None:
    event = audit_event(_record(outcome=outcome, description="denied: insufficient scope"))

    assert (event["outcome"], event["outcomeDesc"]) == (code, "denied: insufficient scope")


@pytest.mark.parametrize(
    ("recorded", "instant"),
    [
        (datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC), "2025-03-01T12:30:15.123Z"),
        (
            datetime(2025, 3, 1, 14, 30, 15, tzinfo=timezone(timedelta(hours=2))),
            "2025-03-01T12:30:15.000Z",
        ),
        (datetime(2025, 3, 1, 12, 30, 15), "2025-03-01T12:30:15.000Z"),
    ],
)
def test_recorded_is_an_instant_in_utc(recorded: datetime, instant: str) -> None:
    assert audit_event(_record(recorded=recorded))["recorded"] == instant


def test_the_id_is_the_records_so_writing_it_again_overwrites_it() -> None:
    record = _record()

    assert audit_event(record)["id"] == record.id


def test_an_operation_is_named_beside_the_interaction() -> None:
    event = audit_event(_record(interaction=Interaction.OPERATION, operation="agree"))

    assert [(c["system"], c["code"]) for c in event["subtype"]] == [
        ("http://hl7.org/fhir/restful-interaction", "operation"),
        (CONTRACT_OPERATION_SYSTEM, "agree"),
    ]
    assert event["subtype"][1]["display"] == "Agreed"


def test_every_operation_route_has_its_code_in_the_published_code_system() -> None:
    operations = {r.operation for r in RULES.values() if isinstance(r, Protected) and r.operation}

    assert operations == set(code_table("contract-operation").names)
    assert f"{urls.BASE}/CodeSystem/contract-operation" == CONTRACT_OPERATION_SYSTEM


def test_a_known_caller_is_the_requesting_user_with_the_app_the_care_unit_and_the_server() -> None:
    event = audit_event(_record())

    user, client, unit, server = event["agent"]
    assert _codes(user["type"]) == ["IRCP"]
    assert {k: v for k, v in user.items() if k != "type"} == {
        "who": {"identifier": {"system": USER.issuer, "value": USER.subject}},
        "requestor": True,
        "network": {"address": "192.0.2.10", "type": "2"},
    }
    assert _codes(client["type"]) == ["110153", "110150"]
    assert client["who"] == {"identifier": {"system": CLIENT_ID_SYSTEM, "value": "ehr-app"}}
    assert _codes(unit["type"]) == ["PROV"]
    assert unit["who"] == {"identifier": {"system": HSA, "value": "SE2321000065-T1"}}
    assert _codes(server["type"]) == ["110152"]
    assert server["who"] == {"display": SERVICE_NAME}
    assert [a["requestor"] for a in event["agent"]] == [True, False, False, False]
    assert event["source"]["observer"] == {"display": SERVICE_NAME}
    assert [c["code"] for c in event["source"]["type"]] == ["4"]


@pytest.mark.parametrize(
    ("caller", "user"),
    [
        (Caller(), {"who": {"display": "unauthenticated"}, "requestor": True}),
        (
            Caller(address="198.51.100.7"),
            {
                "who": {"display": "unauthenticated"},
                "requestor": True,
                "network": {"address": "198.51.100.7", "type": "2"},
            },
        ),
        (Caller(subject="svc"), {"who": {"identifier": {"value": "svc"}}, "requestor": True}),
    ],
)
def test_a_caller_without_a_token_or_issuer_is_still_the_requestor(
    caller: Caller, user: dict[str, Any]
) -> None:
    event = audit_event(_record(caller=caller, outcome=Outcome.MINOR_FAILURE))

    first, server = event["agent"]
    assert {k: v for k, v in first.items() if k != "type"} == user
    assert _codes(server["type"]) == ["110152"]


@pytest.mark.parametrize(
    "patients", [(), (PATIENT,)], ids=["patient-not-in-record", "patient-in-record"]
)
def test_a_patient_acting_for_themselves_is_named_once_as_the_patient(
    patients: tuple[tuple[str, str], ...],
) -> None:
    caller = Caller(subject="p-1", issuer="https://idp.example", patient=PATIENT)

    event = audit_event(_record(caller=caller, patients=patients))

    assert _codes(event["agent"][0]["type"]) == ["IRCP", "PAT"]
    assert [e["what"] for e in _entities(event, "1")] == [
        {"identifier": {"system": PERSONNUMMER, "value": "191212121212"}}
    ]


def test_patients_are_persons_in_the_patient_role() -> None:
    other = (PERSONNUMMER, "190101010101")

    event = audit_event(_record(patients=(PATIENT, other)))

    patients = _entities(event, "1")
    assert [e["what"]["identifier"]["value"] for e in patients] == ["191212121212", "190101010101"]
    assert {(e["type"]["system"], e["type"]["code"]) for e in patients} == {(ENTITY_TYPE, "1")}
    assert {e["role"]["system"] for e in patients} == {OBJECT_ROLE}


@pytest.mark.parametrize(
    ("touched", "what"),
    [
        (
            CONTRACT,
            {
                "type": "CarePlan",
                "display": "CarePlan/42",
                "identifier": {"system": urls.ID_CONTRACT, "value": "c-1"},
            },
        ),
        (
            Touched("CarePlan", reference="CarePlan/42/_history/3"),
            {"type": "CarePlan", "display": "CarePlan/42/_history/3"},
        ),
        (
            Touched("CareTeam", identifier=(urls.ID_CARE_TEAM, "t-1")),
            {"type": "CareTeam", "identifier": {"system": urls.ID_CARE_TEAM, "value": "t-1"}},
        ),
    ],
    ids=["both", "reference", "identifier"],
)
def test_records_touched_are_domain_resources_never_literal_references(
    touched: Touched, what: dict[str, str]
) -> None:
    event = audit_event(_record(entities=(touched,)))

    (entity,) = _entities(event, "4")
    assert entity["what"] == what
    assert (entity["type"]["code"], entity["role"]["code"]) == ("2", "4")


def test_a_search_is_a_query_entity_with_the_raw_query_in_base64() -> None:
    query = "patient=http://electronichealth.se/identifier/personnummer|191212121212&status=agreed"

    event = audit_event(
        _record(interaction=Interaction.SEARCH, route="/contracts", query=query, entities=())
    )

    (entity,) = _entities(event, "24")
    assert base64.b64decode(entity["query"]).decode() == query
    assert entity["description"] == "/contracts"
    assert entity["type"]["code"] == "2"
    assert "what" not in entity


def test_without_a_query_there_is_no_query_entity() -> None:
    assert _entities(audit_event(_record()), "24") == []


def test_the_request_is_named_by_its_request_id_method_and_route() -> None:
    event = audit_event(_record(request_id="3f1c-req", method="POST", route="/contracts"))

    (transaction,) = [e for e in event["entity"] if e["type"]["code"] == "XrequestId"]
    assert transaction["what"] == {"identifier": {"value": "3f1c-req"}}
    assert transaction["description"] == "POST /contracts"


def test_hapi_finds_no_error_in_read_search_denied_and_agree_events(fhir: httpx.Client) -> None:
    events = [
        audit_event(_record()),
        audit_event(
            _record(
                interaction=Interaction.SEARCH,
                route="/contracts",
                query="patient=191212121212",
                entities=(),
            )
        ),
        audit_event(
            _record(
                caller=Caller(address="198.51.100.7"),
                outcome=Outcome.MINOR_FAILURE,
                description="denied: no bearer token",
                patients=(),
            )
        ),
        audit_event(
            _record(
                interaction=Interaction.OPERATION,
                operation="agree",
                method="POST",
                route="/contracts/{contract_id}/agree",
                caller=dataclasses.replace(USER, patient=PATIENT),
            )
        ),
    ]

    for event in events:
        answer = fhir.post("AuditEvent/$validate", json=event)

        assert answer.status_code == 200, answer.text
        errors = [i for i in answer.json()["issue"] if i["severity"] in ("error", "fatal")]
        assert errors == []
