"""``/fhir/{StructureDefinition|ValueSet|CodeSystem|ConceptMap|SearchParameter|
OperationDefinition}``: our conformance resources, by id and by canonical ``url``, without a token.

Every canonical the service writes (a profile in ``meta.profile``, an extension, a code system,
a search parameter, an operation) resolves here, so a validator or a code generator given only
our base can check what we return. They are the files under ``profiles/`` and ``mappings/``,
the same that are loaded into HAPI, and hold no patient data.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request, Response

from fhir_service.api.fhir.answers import base_url
from fhir_service.api.fhir.outcomes import FHIR_JSON, fhir_response, outcome
from fhir_service.api.fhir.routes import ResourceId
from fhir_service.sync import CONFORMANCE_TYPES, conformance_resources

__all__ = ["router"]

Resource = dict[str, Any]

router = APIRouter(prefix="/fhir", tags=["fhir"])

_SEARCHED_BY = frozenset({"url", "version", "_id"})


@cache
def _by_type() -> dict[str, tuple[Resource, ...]]:
    found: dict[str, list[Resource]] = {kind: [] for kind in CONFORMANCE_TYPES}
    for resource in conformance_resources():
        found[resource["resourceType"]].append(resource)
    return {kind: tuple(resources) for kind, resources in found.items()}


def _read(kind: str) -> Any:
    async def read(resource_id: ResourceId) -> Response:
        resource = next((r for r in _by_type()[kind] if r.get("id") == resource_id), None)
        if resource is None:
            return outcome(404, "not-found", f"no {kind} {resource_id} here")
        return fhir_response(resource)

    read.__doc__ = f"One of our {kind} resources, by id (no token needed)."
    return read


def _search(kind: str) -> Any:
    async def search(request: Request) -> Response:
        asked = list(request.query_params.multi_items())
        unknown = sorted({name for name, _ in asked} - _SEARCHED_BY)
        if unknown:
            names = ", ".join(unknown)
            return outcome(
                400, "not-supported", f"{kind} is searched by url, version or _id, not {names}"
            )
        matches = [
            r for r in _by_type()[kind] if all(_matches(r, name, value) for name, value in asked)
        ]
        base = base_url(request)
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [
                {"fullUrl": f"{base}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in matches
            ],
        }
        return fhir_response(bundle)

    search.__doc__ = f"Our {kind} resources, by canonical url (and version) or id."
    return search


def _matches(resource: Resource, name: str, value: str) -> bool:
    if name == "_id":
        return resource.get("id") in value.split(",")
    if name == "version":
        return resource.get("version") == value
    # A canonical may carry its version after a bar: url|version.
    url, _, version = value.partition("|")
    return resource.get("url") == url and (not version or resource.get("version") == version)


for _kind in sorted(CONFORMANCE_TYPES):
    router.add_api_route(
        f"/{_kind}/{{resource_id}}",
        _read(_kind),
        methods=["GET"],
        name="conformance_read",
        operation_id=f"read_{_kind}",
        response_class=Response,
        responses={200: {"content": {FHIR_JSON: {}}}},
    )
    router.add_api_route(
        f"/{_kind}",
        _search(_kind),
        methods=["GET"],
        name="conformance_search",
        operation_id=f"search_{_kind}",
        response_class=Response,
        responses={200: {"content": {FHIR_JSON: {}}}},
    )
