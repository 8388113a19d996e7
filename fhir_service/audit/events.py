"""An access as a FHIR R4 AuditEvent, after the IHE Basic Audit Log Patterns (BALP).

The shape follows BALP's RESTful profiles (Read, Query, Create, Update, Delete) as far as R4 goes:

- ``type`` is ``rest``; ``subtype`` the RESTful interaction, plus our contract operation when there
  is one (``agree``, ``revise``, ...); ``action`` C/R/U/D/E; ``outcome`` 0/4/8.
- agents: the user (``requestor``), the client application, the care unit the user acts for, and
  this service as the server. The user is an information recipient (IRCP) when reading or
  searching and an author (AUT) when writing, and also a patient (PAT) when the token speaks for
  one, as BALP's user agent types say. The client carries DICOM's ``110153`` Source Role ID (BALP
  today) and ``110150`` Application (earlier BALP) so either reading finds it.
- entities: each patient (Person/Patient), each record touched (System Object/Domain Resource),
  the search as BALP's query entity (its raw query string base64-encoded), and the request as
  BALP's transaction entity (``X-Request-Id`` value, method and route template). A record touched
  is named by identifier and type, its ``Type/id`` only as ``what.display``: HAPI checks literal
  references on every write, and an event about a deleted or missing record must still be stored.

A ``meta.tag`` names the BALP pattern of the interaction (``IHE.BasicAudit.Read`` ...), even for
a denial, as a label auditors can search by (``_tag``). It is a tag, not a ``meta.profile``
claim: BALP's definitions are not published where this service can load them, so a validator
resolving profiles from our FHIR base could not check the claim and would report it as an error;
everything else is checked against core R4. The ``Patient*`` variants are not followed because
they require a Patient reference, and the service knows patients by identifier.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from fhir_service.audit.records import (
    AccessRecord,
    Caller,
    FhirIdentifier,
    Interaction,
    Touched,
)
from fhir_service.mapping.tables import code_table

__all__ = [
    "BALP_PATTERN",
    "CLIENT_ID_SYSTEM",
    "CONTRACT_OPERATION_SYSTEM",
    "SERVICE_NAME",
    "audit_event",
]

SERVICE_NAME = "patient-contracts-fhir-service"
CLIENT_ID_SYSTEM = "urn:ietf:params:oauth:client-id"
_OPERATIONS = code_table("contract-operation")
CONTRACT_OPERATION_SYSTEM = _OPERATIONS.system
BALP_PATTERN = "https://profiles.ihe.net/ITI/BALP/StructureDefinition"
"""The system of the tag naming an event's BALP pattern; its code is the profile's id."""
"""A BALP profile's URL, to fill with ``Read``, ``Query``, ``Create``, ``Update`` or ``Delete``."""

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"

# Per interaction: the BALP profile it is recorded under, and AuditEvent.action.
_KIND: dict[Interaction, tuple[str, str]] = {
    Interaction.READ: ("Read", "R"),
    Interaction.VREAD: ("Read", "R"),
    Interaction.HISTORY: ("Read", "R"),
    Interaction.TYPE_HISTORY: ("Query", "E"),
    Interaction.SEARCH: ("Query", "E"),
    Interaction.CREATE: ("Create", "C"),
    Interaction.UPDATE: ("Update", "U"),
    Interaction.OPERATION: ("Update", "U"),
    Interaction.DELETE: ("Delete", "D"),
    # A contract's transaction creates or changes it; BALP has no profile of its own for it.
    Interaction.TRANSACTION: ("Update", "U"),
}

_RECIPIENT = {"system": _PARTICIPATION, "code": "IRCP", "display": "information recipient"}
_AUTHOR = {"system": _PARTICIPATION, "code": "AUT", "display": "author (originator)"}
_PROVIDER = {"system": _ROLE_CLASS, "code": "PROV", "display": "healthcare provider"}
_PATIENT_USER = {"system": _ROLE_CLASS, "code": "PAT", "display": "patient"}
_PERSON = {"system": _ENTITY_TYPE, "code": "1", "display": "Person"}
_SYSTEM_OBJECT = {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"}


def audit_event(record: AccessRecord) -> dict[str, Any]:
    """The AuditEvent (FHIR R4 JSON) of one access, with ``record.id`` as its id."""
    profile, action = _KIND[record.interaction]
    subtype = [
        {
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": str(record.interaction),
            "display": str(record.interaction),
        }
    ]
    if record.operation:
        subtype.append(_OPERATIONS.coding(record.operation))
    return {
        "resourceType": "AuditEvent",
        "id": record.id,
        "meta": {"tag": [{"system": BALP_PATTERN, "code": f"IHE.BasicAudit.{profile}"}]},
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": subtype,
        "action": action,
        "recorded": _instant(record.recorded),
        **({} if record.outcome is None else {"outcome": str(int(record.outcome))}),
        "outcomeDesc": record.description,
        "agent": _agents(record.caller, writes=action in ("C", "U", "D")),
        "source": {
            "observer": {"display": SERVICE_NAME},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": _entities(record),
    }


def _instant(moment: datetime) -> str:
    # FHIR instants need a zone; a naive time from the service is UTC by convention.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _agents(caller: Caller, *, writes: bool) -> list[dict[str, Any]]:
    agents = [_user(caller, writes=writes)]
    if caller.client_id:
        client: dict[str, Any] = {
            "type": {
                "coding": [
                    {"system": _DCM, "code": "110153", "display": "Source Role ID"},
                    {"system": _DCM, "code": "110150", "display": "Application"},
                ]
            },
            "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": caller.client_id}},
            "requestor": False,
        }
        agents.append(client)
    if caller.organization:
        agents.append(
            {
                "type": {"coding": [_PROVIDER]},
                "who": {"identifier": _identifier(caller.organization)},
                "requestor": False,
            }
        )
    agents.append(
        {
            "type": {
                "coding": [{"system": _DCM, "code": "110152", "display": "Destination Role ID"}]
            },
            "who": {"display": SERVICE_NAME},
            "requestor": False,
        }
    )
    return agents


def _user(caller: Caller, *, writes: bool) -> dict[str, Any]:
    coding = [_AUTHOR if writes else _RECIPIENT]
    if caller.patient:
        coding.append(_PATIENT_USER)
    who: dict[str, Any]
    if caller.subject is None:
        who = {"display": "unauthenticated"}
    else:
        who = {"identifier": _drop_none({"system": caller.issuer, "value": caller.subject})}
    user: dict[str, Any] = {"type": {"coding": coding}, "who": who, "requestor": True}
    if caller.address:
        # BALP keeps network addresses for devices; the service sees only the peer's address
        # and the user is the one party always present, so it is recorded here.
        user["network"] = {"address": caller.address, "type": "2"}
    return user


def _entities(record: AccessRecord) -> list[dict[str, Any]]:
    patients = list(record.patients)
    if record.caller.patient and record.caller.patient not in patients:
        patients.append(record.caller.patient)
    entities = [_patient(p) for p in patients]
    entities += [_touched(t) for t in record.entities]
    if record.query is not None:
        entities.append(
            {
                "type": _SYSTEM_OBJECT,
                "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                "description": record.route,
                "query": base64.b64encode(record.query.encode("utf-8")).decode("ascii"),
            }
        )
    entities.append(
        {
            "what": {"identifier": {"value": record.request_id}},
            "type": {
                "system": _BALP_ENTITY_TYPE,
                "code": "XrequestId",
                "display": "X-Request-Id",
            },
            "description": f"{record.method} {record.route}",
        }
    )
    return entities


def _patient(identifier: FhirIdentifier) -> dict[str, Any]:
    return {
        "what": {"identifier": _identifier(identifier)},
        "type": _PERSON,
        "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
    }


def _touched(touched: Touched) -> dict[str, Any]:
    what: dict[str, Any] = {"type": touched.resource_type}
    if touched.reference:
        # Not as Reference.reference: HAPI refuses a write whose references do not resolve, and
        # an event must outlive the record it names (a delete, a probe for a missing id, a record
        # deleted while HAPI was down and the event waited in the outbox).
        what["display"] = touched.reference
    if touched.identifier:
        what["identifier"] = _identifier(touched.identifier)
    return {
        "what": what,
        "type": _SYSTEM_OBJECT,
        "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
    }


def _identifier(identifier: FhirIdentifier) -> dict[str, str]:
    system, value = identifier
    return {"system": system, "value": value}


def _drop_none(values: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}
