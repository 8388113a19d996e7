"""FHIR answers of the endpoint: resources as ``application/fhir+json``, errors as
OperationOutcomes whose ``diagnostics`` a person can act on.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from fhir_service import wire

__all__ = ["FHIR_JSON", "fhir_response", "outcome"]

FHIR_JSON = "application/fhir+json"


class _FhirJson(JSONResponse):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        # Searches answer Bundles of many resources: orjson writes them several times faster.
        return wire.dumps(content)


def fhir_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``body`` as FHIR JSON."""
    return _FhirJson(body, status_code=status, headers=headers)


def outcome(
    status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An OperationOutcome of one error ``issue`` with the FHIR issue-type ``code``."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
    return fhir_response(body, status, headers)
