"""The OpenAPI document, completed with the answers no route declares and the request examples.

FastAPI documents what each route returns itself. The layers around the routes answer too: the
security middleware (401, 403, 503 when the audit record cannot be kept), the body limit (413),
FastAPI's body parsing (400) and request validation (422, a problem rather than FastAPI's
``HTTPValidationError``), and the handler of unreadable stored contracts (502). `install` adds
those answers to every operation they reach, each in the form of its facade: a `Problem` from
the JSON facade, an OperationOutcome from the FHIR endpoint.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.models import Example
from fastapi.routing import RouteContext, iter_route_contexts

from fhir_service.api.access_rules import Protected, Public, rule_for
from fhir_service.api.fhir.outcomes import FHIR_JSON
from fhir_service.api.problems import PROBLEM_JSON, Problem
from fhir_service.mapping import MAPPINGS_DIR

__all__ = ["complete", "contract_examples", "install"]

_REF_TEMPLATE = "#/components/schemas/{model}"
# What FastAPI documents for a request that fails validation; the service answers a Problem.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_CONTRACT_EXAMPLES = MAPPINGS_DIR.parent / "profiles" / "examples" / "contracts"
# Below this path OperationOutcomeMiddleware rewrites every problem as an OperationOutcome.
_FHIR_BASE = "/fhir"

_BEARER = "bearer"
_WWW_AUTHENTICATE = "WWW-Authenticate"
_RETRY_AFTER = "Retry-After"
_STRING = {"type": "string"}

_OPERATION_OUTCOME: dict[str, Any] = {
    "title": "OperationOutcome",
    "description": "A FHIR R4 OperationOutcome saying why the request failed; only the elements "
    "this service sets are shown.",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string", "description": "The FHIR issue type."},
                    "diagnostics": {"type": "string"},
                    "details": {"type": "object", "properties": {"text": _STRING}},
                },
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class _ErrorForm:
    """How one facade writes its errors: a media type, and the schema of the body."""

    media_type: str
    schema_name: str

    def schema(self) -> dict[str, str]:
        return {"$ref": _REF_TEMPLATE.format(model=self.schema_name)}


_PROBLEMS = _ErrorForm(PROBLEM_JSON, Problem.__name__)
_OUTCOMES = _ErrorForm(FHIR_JSON, _OPERATION_OUTCOME["title"])


@dataclass(frozen=True, slots=True)
class _Answer:
    """An error answer from outside the routes, as documented on the operations it reaches."""

    description: str
    headers: Mapping[str, dict[str, Any]] = field(default_factory=dict)


_RETRY_AFTER_REQUIRED = {
    _RETRY_AFTER: {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer"},
    }
}
_UNAUTHORIZED = _Answer(
    "No bearer token, or the token is refused (expired, not yet valid, another issuer or "
    "audience, a bad signature).",
    {
        _WWW_AUTHENTICATE: {
            "description": 'The Bearer challenge; error="invalid_token" and its description '
            "say why a token was refused.",
            "required": True,
            "schema": _STRING,
        }
    },
)
_FORBIDDEN = _Answer(
    "The token's scopes do not allow this, or what is asked lies outside the token's "
    "patient or care unit.",
    {
        _WWW_AUTHENTICATE: {
            "description": 'On a refusal by the security layer: error="insufficient_scope" '
            "and why.",
            "schema": _STRING,
        }
    },
)
_UNPARSABLE = _Answer("The body cannot be parsed at all (not JSON in UTF-8); nothing was written.")
_TOO_LARGE = _Answer("The request body is larger than the service takes; nothing was written.")
_INVALID = _Answer(
    "The request does not match this document (a parameter, header or body outside its schema)."
)
_UNREADABLE = _Answer(
    "A stored contract cannot be read as one (another system changed it in a way the mapping "
    "does not allow); an operator must repair it."
)
_UNACCOUNTABLE = _Answer(
    "The audit trail could not record the access, or the token could not be checked (signing "
    "keys or the token's patient out of reach): nothing is answered. Retry after Retry-After.",
    _RETRY_AFTER_REQUIRED,
)
_FHIR_REFUSED = _Answer(
    "Any other refusal (no such resource, a format other than JSON, a search or transaction "
    "the FHIR store or the service refuses): the OperationOutcome says why."
)
_FHIR_STORE_FAILED = _Answer("The FHIR store failed to answer, or refused a valid write.")
_FHIR_STORE_UNAVAILABLE = _Answer(
    "The FHIR store is unavailable; nothing was written. Retry after Retry-After.",
    _RETRY_AFTER_REQUIRED,
)


def install(app: FastAPI) -> None:
    """Make ``app.openapi`` answer the generated document completed by `complete`."""
    generate = app.openapi
    completed: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document and builds a new one when routes are added: each new one
        # is completed once, in place, so the cached one is what /openapi.json serves.
        nonlocal completed
        document = generate()
        if document is not completed:
            complete(document, iter_route_contexts(app.routes))
            completed = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], routes: Iterable[RouteContext]) -> None:
    """Add to ``document`` the answers of the layers around ``routes``, with their schemas.

    An operation with a body gets 400 (undecodable) and 413 (too large), one with any input
    422; a protected one gets 401, 403 and 503 from the security layer, and 502 if it reads
    contracts. The FHIR endpoint's operations also get its own 4XX, 502 and 503. An answer a
    route already documents keeps its description, with the common cause added.
    """
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    _add_schemas(schemas)
    document["components"]["securitySchemes"] = {
        _BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An RS256 or ES256 JWT of the configured issuer, with SMART v2 "
            "scopes (system/, user/ or patient/ + cruds) for the types a route needs.",
        }
    }
    for route in routes:
        path = route.path_format or ""
        for method in sorted(route.methods or ()):
            operation = document.get("paths", {}).get(path, {}).get(method.lower())
            if operation is not None:
                _complete_operation(operation, path, rule_for(route.name or ""))
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        if not _refers_to(document, name):
            schemas.pop(name, None)
    document["components"]["schemas"] = dict(sorted(schemas.items()))


def contract_examples() -> dict[str, Example]:
    """The seed scenarios of ``profiles/examples/contracts``, as request examples by file name."""
    examples: dict[str, Example] = {}
    for path in sorted(_CONTRACT_EXAMPLES.glob("*.json")):
        contract = json.loads(path.read_text("utf-8"))
        scenario = path.stem.replace("-", " ").capitalize()
        examples[path.stem] = Example(
            summary=f"{scenario}: {contract['title']} ({contract['status']})", value=contract
        )
    return examples


def _add_schemas(schemas: dict[str, Any]) -> None:
    problem = Problem.model_json_schema(ref_template=_REF_TEMPLATE, mode="serialization")
    added = {
        **problem.pop("$defs", {}),
        _PROBLEMS.schema_name: problem,
        _OUTCOMES.schema_name: _OPERATION_OUTCOME,
    }
    for name, schema in added.items():
        if schemas.get(name, schema) != schema:
            raise ValueError(f"two different schemas are named {name!r} in the OpenAPI document")
        schemas[name] = copy.deepcopy(schema)


def _complete_operation(
    operation: dict[str, Any], path: str, rule: Protected | Public | None
) -> None:
    form = _OUTCOMES if path == _FHIR_BASE or path.startswith(f"{_FHIR_BASE}/") else _PROBLEMS
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for response in responses.values():
        _replace_fastapi_validation_error(response, form)
    for status, answer in _answers_of(operation, rule, fhir=form is _OUTCOMES).items():
        _add(responses, status, answer, form)
    if isinstance(rule, Protected):
        # The permission the route needs, as the scope that grants it, for Swagger UI's Authorize.
        needed = f"{rule.requirement.resource_type}.{rule.requirement.permission}"
        operation["security"] = [{_BEARER: [needed]}]
    for status, response in responses.items():
        if status.startswith(("4", "5")):
            _describe_error(response, form)
    operation["responses"] = dict(sorted(responses.items()))


def _answers_of(
    operation: dict[str, Any], rule: Protected | Public | None, *, fhir: bool
) -> dict[str, _Answer]:
    answers: dict[str, _Answer] = {}
    if "requestBody" in operation:
        # FastAPI answers 400 for a body it cannot decode, 422 for one it decodes but refuses.
        answers |= {"400": _UNPARSABLE, "413": _TOO_LARGE}
    if "requestBody" in operation or operation.get("parameters"):
        # An operation without any input has nothing to validate, so it never answers 422.
        answers["422"] = _INVALID
    if fhir:
        # The FHIR endpoint answers HAPI's refusals and failures in FHIR's terms, for any route.
        answers |= {"4XX": _FHIR_REFUSED, "502": _FHIR_STORE_FAILED, "503": _FHIR_STORE_UNAVAILABLE}
    if isinstance(rule, Protected):
        answers |= {"401": _UNAUTHORIZED, "403": _FORBIDDEN}
        answers["503"] = _merged(answers.get("503"), _UNACCOUNTABLE)
        if rule.requirement.resource_type == "CarePlan":
            answers["502"] = _merged(answers.get("502"), _UNREADABLE)
    return answers


def _merged(first: _Answer | None, second: _Answer) -> _Answer:
    if first is None:
        return second
    return _Answer(f"{first.description} {second.description}", {**second.headers, **first.headers})


def _replace_fastapi_validation_error(response: dict[str, Any], form: _ErrorForm) -> None:
    content: dict[str, Any] = response.get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    if schema.get("$ref") == _REF_TEMPLATE.format(model=_FASTAPI_VALIDATION_SCHEMAS[0]):
        # The RequestValidationError handler answers a problem with errors, never this.
        response["description"] = _INVALID.description
        response["content"] = {form.media_type: {}}


def _add(responses: dict[str, Any], status: str, answer: _Answer, form: _ErrorForm) -> None:
    response = responses.setdefault(status, {"description": answer.description})
    if answer.description not in response["description"]:
        response["description"] = f"{response['description']} {answer.description}"
    headers: dict[str, Any] = response.setdefault("headers", {})
    for name, header in answer.headers.items():
        headers.setdefault(name, copy.deepcopy(header))
    if not headers:
        del response["headers"]
    response.setdefault("content", {}).setdefault(form.media_type, {})


def _describe_error(response: dict[str, Any], form: _ErrorForm) -> None:
    described = response.get("content", {}).get(form.media_type)
    if described is not None and not described.get("schema"):
        described["schema"] = form.schema()


def _refers_to(node: object, schema_name: str) -> bool:
    if isinstance(node, dict):
        if node.get("$ref") == _REF_TEMPLATE.format(model=schema_name):
            return True
        return any(_refers_to(value, schema_name) for value in node.values())
    if isinstance(node, list):
        return any(_refers_to(value, schema_name) for value in node)
    return False
