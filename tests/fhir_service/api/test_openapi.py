"""The OpenAPI document: every answer of the layers around the routes, in its facade's form
(a Problem, or an OperationOutcome below /fhir), and the request examples.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from openapi_spec_validator import validate

from fhir_service.api import create_app, patient_page
from fhir_service.api.access_rules import RULES, Protected
from fhir_service.api.webhooks import WebhookIn
from fhir_service.contract import Contract
from fhir_service.settings import Settings

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
SCENARIOS = {
    "elderly-psychiatry",
    "knee-replacement",
    "norwegian-individual-plan",
    "stroke-rehabilitation",
}
PAGE_FORMS = {route.name for route in patient_page.router.routes if hasattr(route, "name")}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
OUTCOME = {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}


def _document_and_protected() -> tuple[dict[str, Any], list[tuple[str, str]], set[str]]:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            hapi_url="http://hapi.invalid/fhir", auth_local_issuer=True, data_dir=Path(directory)
        )
        app = create_app(settings)
        # The patient page's forms are for a person's browser, not for API clients: they are
        # left out of the document, and the README names them.
        routes = [
            route
            for route in iter_route_contexts(app.routes)
            if isinstance(RULES.get(route.name or ""), Protected) and route.name not in PAGE_FORMS
        ]
        protected = [
            (method.lower(), route.path_format)
            for route in routes
            for method in sorted(route.methods or ())
        ]
        return app.openapi(), protected, {str(route.name) for route in routes}


DOCUMENT, PROTECTED, PROTECTED_NAMES = _document_and_protected()


def _operation(method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = DOCUMENT["paths"][path][method]
    return operation


def _operations() -> list[tuple[str, str]]:
    return [(method, path) for path, item in DOCUMENT["paths"].items() for method in item]


def _error_content(path: str) -> dict[str, Any]:
    return OUTCOME if path == "/fhir" or path.startswith("/fhir/") else PROBLEM


def test_every_protected_route_is_in_the_document() -> None:
    # Every protected rule is some route's (a search by GET and by POST share one).
    protected = {n for n, rule in RULES.items() if isinstance(rule, Protected)}
    assert protected - PAGE_FORMS == PROTECTED_NAMES
    assert len(PAGE_FORMS) == 10
    assert protected >= PAGE_FORMS
    for method, path in PROTECTED:
        assert method in DOCUMENT["paths"].get(path, {}), f"{method.upper()} {path}"


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_operation_documents_the_security_layers_answers(
    method: str, path: str
) -> None:
    operation = _operation(method, path)
    takes_body = "requestBody" in operation
    takes_input = takes_body or bool(operation.get("parameters"))
    expected = {"401", "403", "503"} | ({"413"} if takes_body else set())
    expected |= {"422"} if takes_input else set()

    responses = operation["responses"]

    assert expected <= set(responses)
    for status in expected:
        assert responses[status]["content"] == _error_content(path), status
    assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert responses["503"]["headers"]["Retry-After"]["required"] is True


def test_an_operation_without_input_documents_no_validation_error() -> None:
    # GET /webhooks has no parameter and no body: nothing it could refuse as invalid.
    assert "422" not in _operation("get", "/webhooks")["responses"]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_error_answer_with_content_is_in_its_facades_form(method: str, path: str) -> None:
    for status, response in _operation(method, path)["responses"].items():
        if status.startswith(("4", "5")) and "content" in response:
            assert response["content"] == _error_content(path), status


def test_the_fhir_endpoint_documents_its_own_refusals_as_operation_outcomes() -> None:
    responses = _operation("get", "/fhir/CarePlan/{resource_id}")["responses"]

    assert {"4XX", "502", "503"} <= set(responses)
    assert DOCUMENT["components"]["schemas"]["OperationOutcome"]["required"] == [
        "resourceType",
        "issue",
    ]


def test_validation_errors_are_documented_as_the_service_answers_them() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    problem = schemas["Problem"]

    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert problem["required"] == ["type", "title", "status", "detail"]
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/InvalidInput"}
    assert set(schemas["InvalidInput"]["required"]) == {"location", "message"}
    # The 409 of a stale write and the 503 of /ready carry their own members.
    assert problem["properties"]["currentVersion"]["type"] == "integer"
    assert problem["properties"]["checks"]["additionalProperties"] == {
        "$ref": "#/components/schemas/DependencyCheck"
    }


def test_route_specific_answers_keep_their_descriptions() -> None:
    responses = _operation("put", "/contracts/{contract_id}")["responses"]

    assert responses["428"]["description"] == "If-Match is missing."
    assert responses["409"]["description"].startswith("Stale version")
    assert responses["503"]["description"].startswith("HAPI FHIR is unavailable")
    assert "audit trail" in responses["503"]["description"]


@pytest.mark.parametrize(
    ("method", "path"), [("post", "/contracts"), ("put", "/contracts/{contract_id}")]
)
def test_contract_writes_show_the_four_seed_scenarios_as_examples(method: str, path: str) -> None:
    body = _operation(method, path)["requestBody"]["content"]["application/json"]
    examples = body["examples"]

    assert set(examples) == SCENARIOS
    for name, example in examples.items():
        assert example["summary"]
        assert example["value"] == json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
        Contract.model_validate(example["value"])


def test_webhook_registration_shows_an_acceptable_example() -> None:
    body = _operation("post", "/webhooks")["requestBody"]["content"]["application/json"]

    (example,) = body["examples"].values()

    assert example["summary"]
    WebhookIn.model_validate(example["value"])


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")

    validate(DOCUMENT)


def test_protected_operations_name_the_bearer_scheme_and_the_permission_they_need() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    read = DOCUMENT["paths"]["/contracts/{contract_id}"]["get"]
    health = DOCUMENT["paths"]["/health"]["get"]

    assert schemes["bearer"]["scheme"] == "bearer"
    assert read["security"] == [{"bearer": ["CarePlan.r"]}]
    assert "security" not in health


def test_the_names_of_codes_are_documented_where_they_are_answered() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    labels = _operation("get", "/labels")
    plan = _operation("get", "/patients/{patient}/plan")["responses"]["200"]
    search = _operation("get", "/contracts")["responses"]["200"]

    assert labels["description"]
    assert {"200", "304"} <= set(labels["responses"])
    assert {"ETag", "Cache-Control", "Content-Language", "Vary"} <= set(
        labels["responses"]["200"]["headers"]
    )
    assert {"Accept-Language", "If-None-Match", "lang"} <= {
        parameter["name"] for parameter in labels["parameters"]
    }
    for response in (plan, search):
        assert {"Content-Language", "Vary"} <= set(response["headers"])
    for schema in ("PlanView", "ContractList", "LabelSet"):
        assert schemas[schema]["properties"]["labels"]["description"], schema
    assert schemas["PlanView"]["properties"]["language"]["description"]
    assert "labels" not in schemas["Contract"]["properties"]
