"""Auditors' searches in HAPI: AuditEvents by entity and agent identifier and date, Provenance by
target identifier (our SearchParameters in profiles/searchparameters/)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from fhir_service.audit.events import CLIENT_ID_SYSTEM
from fhir_service.audit.outbox import AuditOutbox, AuditWriter, record
from fhir_service.audit.records import AccessRecord, Caller, Interaction, Outcome, Touched
from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls


def _access(caller: Caller, patient: tuple[str, str], recorded: datetime) -> AccessRecord:
    return AccessRecord(
        id=str(uuid.uuid4()),
        recorded=recorded,
        interaction=Interaction.READ,
        outcome=Outcome.SUCCESS,
        description="read contract",
        caller=caller,
        request_id=str(uuid.uuid4()),
        method="GET",
        route="/contracts/{contract_id}",
        patients=(patient,),
        entities=(Touched("CarePlan", identifier=(urls.ID_CONTRACT, str(uuid.uuid4()))),),
    )


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def _ids(hapi: HapiClient, resource_type: str, params: list[tuple[str, str]]) -> set[str]:
    return {r["id"] for r in (await hapi.search(resource_type, params)).matches()}


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
async def test_written_audit_events_are_found_by_patient_contract_user_client_and_date(
    engine: Engine, hapi: HapiClient, system: str
) -> None:
    now = datetime.now(UTC)
    user = Caller(subject="user-1", issuer=system, client_id=f"app-{uuid.uuid4()}")
    today = _access(user, (system, "191212121212"), now)
    last_week = _access(user, (system, "191212121212"), now - timedelta(days=7))
    other_patient = _access(user, (system, "190101010101"), now)
    for access in (today, last_week, other_patient):
        await asyncio.to_thread(record, engine, access)
    await AuditWriter(AuditOutbox(engine), hapi).run_once()
    (contract,) = today.entities
    assert contract.identifier is not None
    contract_system, contract_id = contract.identifier

    by_patient = await _ids(hapi, "AuditEvent", [("entity-identifier", f"{system}|191212121212")])
    by_contract = await _ids(
        hapi, "AuditEvent", [("entity-identifier", f"{contract_system}|{contract_id}")]
    )
    by_user_today = await _ids(
        hapi,
        "AuditEvent",
        [
            ("agent-identifier", f"{system}|user-1"),
            ("date", f"ge{_instant(now - timedelta(minutes=5))}"),
            ("date", f"lt{_instant(now + timedelta(minutes=5))}"),
        ],
    )
    by_client = await _ids(
        hapi, "AuditEvent", [("agent-identifier", f"{CLIENT_ID_SYSTEM}|{user.client_id}")]
    )

    assert by_patient == {today.id, last_week.id}
    assert by_contract == {today.id}
    assert by_user_today == {today.id, other_patient.id}
    assert by_client == {today.id, last_week.id, other_patient.id}


async def test_provenance_is_found_by_its_targets_identifier(hapi: HapiClient, system: str) -> None:
    careplan = await hapi.create(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"identifier": {"system": system, "value": "191212121212"}},
        }
    )
    provenance = await hapi.create(
        {
            "resourceType": "Provenance",
            "target": [
                {
                    "reference": f"CarePlan/{careplan['id']}",
                    "identifier": {"system": system, "value": "contract-1"},
                }
            ],
            "recorded": _instant(datetime.now(UTC)),
            "agent": [{"who": {"display": "the responsible clinician"}}],
        }
    )

    found = await _ids(hapi, "Provenance", [("target-identifier", f"{system}|contract-1")])
    elsewhere = await _ids(hapi, "Provenance", [("target-identifier", f"{system}|contract-2")])

    assert found == {provenance["id"]}
    assert elsewhere == set()
