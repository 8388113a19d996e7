"""Schemathesis against the running service with a valid token: whatever the OpenAPI document
allows a client to send, the answer is never a 500 (only 502/503 when HAPI fails us), never a
stack trace, never HAPI's address, every refusal is a problem document or an OperationOutcome,
and every answer is one the document describes: its status, content type, headers and body.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode, Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fhir_service.security.roles import Role
from tests.auth import TestIssuer
from tests.service_process import running_service

UNIT = "hsa-id|SE2321000065-1254"
PATIENT = "personnummer|197506258933"
ERROR_TYPES = ("application/problem+json", "application/fhir+json")
# Per operation, role and mode: four fuzz runs of 25 took 5.5 minutes of a 28-minute CI run.
EXAMPLES = 15
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def service(
    conformance_loaded: str, tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("fuzz")
    environment = {
        **issuer.env(),
        "HAPI_URL": conformance_loaded,
        "DATABASE_URL": f"sqlite:///{directory / 'service.db'}",
        "WEBHOOK_ALLOWED_HOSTS": "*.example",
    }
    with running_service(environment, directory / "service.log") as base_url:
        yield base_url


@pytest.mark.parametrize("mode", list(GenerationMode))
@pytest.mark.parametrize(
    ("role", "claims"), [("ehr", {"organization": UNIT}), ("patient", {"patient": PATIENT})]
)
def test_no_generated_request_breaks_the_service(
    service: str,
    issuer: TestIssuer,
    conformance_loaded: str,
    mode: GenerationMode,
    role: Role,
    claims: dict[str, str],
) -> None:
    # Positive requests fit the schema and reach the routes' logic; negative ones break it.
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json")
    headers = issuer.headers(role, **claims)
    hapi = urlsplit(conformance_loaded).netloc
    tried: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        if _same_as_fuzzed(operation.path):
            continue
        inputs = (operation.path_parameters, operation.query, operation.headers, operation.body)
        if mode is GenerationMode.NEGATIVE and not any(len(i) for i in inputs):
            continue  # nothing to send that breaks the schema

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def survives(case: Case) -> None:
            _check(case, case.call(base_url=service, headers=headers, timeout=60), hapi)

        survives()
        tried.append(operation.label)

    # Every route of the API was fuzzed: a schema that lost its paths would pass vacuously.
    assert {"POST /contracts", "PUT /contracts/{contract_id}", "POST /webhooks"} <= set(tried)
    assert {"GET /fhir/Patient/{resource_id}", "GET /fhir/CarePlan/_history"} <= set(tried)


# The FHIR endpoint's routes of each interaction are one function made per type: fuzzing every
# type would send the same code thousands more requests. These types stand for the rest, one
# of each kind the guard tells apart: a contract's records (with and without writes and
# operations), the patient, a relative, the directory, bookable times and the audit trail.
FUZZED_TYPES = {"CarePlan", "Goal", "Appointment", "Patient", "RelatedPerson", "Practitioner"}
FUZZED_TYPES |= {"Slot", "AuditEvent", "StructureDefinition", "Bundle"}


def _same_as_fuzzed(path: str) -> bool:
    """Whether ``path`` is a FHIR route of a type another fuzzed type stands for."""
    parts = path.split("/")
    return (
        len(parts) > 2
        and parts[1] == "fhir"
        and parts[2][:1].isupper()
        and (parts[2] not in FUZZED_TYPES)
    )


def _check(case: Case, response: Response, hapi: str) -> None:
    where = f"{case.method} {case.formatted_path}"
    # Schemathesis gives header names in lower case, each with a list of values.
    shown = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    # 502 and 503 speak of HAPI (down, or holding data another system broke), not of us.
    upstream = response.status_code in (502, 503)
    assert response.status_code < 500 or upstream, (
        f"{where}: {response.status_code} {response.text}"
    )
    assert "Traceback" not in shown, where
    assert hapi not in shown, f"HAPI's address leaked from {where}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0].split(";")[0]
        assert content_type in ERROR_TYPES, f"{where}: {response.status_code} {content_type}"
    case.validate_response(response, checks=CONFORMANCE)
