"""``POST /fhir``: a transaction Bundle holding one whole contract, created or changed, and
``Bundle/$validate``, which checks one as that would and writes nothing
(`fhir_service.records.transactions` says how).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from fhir_service.api.deps import RecordsDep
from fhir_service.api.fhir.answers import answer, base_url, preferred, rebased
from fhir_service.api.fhir.bodies import fhir_body
from fhir_service.api.fhir.outcomes import FHIR_JSON, fhir_response

__all__ = ["router"]

Resource = dict[str, Any]

router = APIRouter(prefix="/fhir", tags=["fhir"])


@router.post(
    "",
    name="fhir_transaction",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def transaction(request: Request, records: RecordsDep) -> Response:
    """Create or change one contract from a transaction Bundle of its records."""

    async def work() -> Response:
        bundle = await fhir_body(request)
        wanted = preferred(request)
        if_match = request.headers.get("if-match")
        answered = await records.transaction(
            bundle, if_match, represented=wanted == "representation"
        )
        if wanted == "OperationOutcome":
            # Each entry's outcome instead of the record, as R4 has it for this preference.
            for entry in answered["entry"]:
                status = entry["response"]["status"]
                said = {"severity": "information", "code": "informational", "diagnostics": status}
                entry["response"]["outcome"] = {"resourceType": "OperationOutcome", "issue": [said]}
        return fhir_response(rebased(answered, records.hapi_base, base_url(request)))

    return await answer(request, work)


@router.post(
    "/Bundle/$validate",
    name="fhir_validate_bundle",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}, 422: {"content": {FHIR_JSON: {}}}},
)
async def validate_bundle(request: Request, records: RecordsDep) -> Response:
    """Check a contract's transaction Bundle as ``POST /fhir`` would, and write nothing.

    The answer to a Bundle ``POST /fhir`` would refuse for its content is the same
    OperationOutcome; one it would take gets 200 and an information issue. Whether the caller
    may write that contract, and whether the version it names is still current, are decided
    when it is sent.
    """

    async def work() -> Response:
        bundle = _resource_parameter(await fhir_body(request))
        contract = await records.checked_transaction(bundle)
        accepted = {
            "severity": "information",
            "code": "informational",
            "diagnostics": f"the Bundle holds contract {contract.id}, which POST /fhir takes as "
            "it is; nothing was written",
        }
        return fhir_response({"resourceType": "OperationOutcome", "issue": [accepted]}, 200)

    return await answer(request, work)


def _resource_parameter(body: Resource) -> Resource:
    """The resource to check: the body, or its ``resource`` parameter (FHIR's form of
    ``$validate``)."""
    if body.get("resourceType") != "Parameters":
        return body
    for parameter in body.get("parameter") or []:
        if isinstance(parameter, dict) and parameter.get("name") == "resource":
            resource = parameter.get("resource")
            return resource if isinstance(resource, dict) else {}
    return {}
