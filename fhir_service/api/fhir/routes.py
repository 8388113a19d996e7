"""The FHIR endpoint under ``/fhir``: read, vread, history and search of a contract's records,
of what they name (patients, the directory, bookable times), and of the audit trail for
auditors, in FHIR R4 JSON; and the coherent plan.

Each route parses the request, makes one call to the caller's records (`CallerRecords`, which
applies the caller's walls and names what they saw in the audit record) and answers with what it
gives (`fhir_service.api.fhir.answers`): HAPI stays internal, every answer names this service's
base URL, and errors are OperationOutcomes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Path, Request, Response

from fhir_service.api.deps import RecordsDep, ServiceDep, SettingsDep
from fhir_service.api.fhir.answers import answer, base_url, bundle_answer, resource_answer
from fhir_service.api.fhir.bodies import fhir_body, parameter
from fhir_service.api.fhir.capability import statement_from
from fhir_service.api.fhir.outcomes import FHIR_JSON, fhir_response, outcome
from fhir_service.api.fhir.subsetting import subset_of
from fhir_service.api.fhir.types import INTERACTIONS, route_name
from fhir_service.records import CallerRecords
from fhir_service.security import endpoints, oauth_uris

__all__ = ["router"]

router = APIRouter(prefix="/fhir", tags=["fhir"])

ResourceId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The resource's logical id.")
]
VersionId = Annotated[str, Path(pattern=r"^[0-9]{1,10}$", description="The version id.")]


def _add_routes(kind: str) -> None:
    offered = INTERACTIONS[kind]

    async def search(request: Request, records: RecordsDep) -> Response:
        params = list(request.query_params.multi_items())
        return await answer(request, lambda: searched(request, records, params))

    async def search_posted(request: Request, records: RecordsDep) -> Response:
        # FHIR's POST [type]/_search: the parameters in a form body, as well as in the URL.
        form = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        params = [*request.query_params.multi_items(), *form]
        return await answer(request, lambda: searched(request, records, params))

    async def searched(
        request: Request, records: CallerRecords, params: list[tuple[str, str]]
    ) -> Response:
        subset, params = subset_of(params)
        posted = request.method != "GET"
        bundle = await records.search(kind, params, posted=posted)
        # A search posted is linked to as the same search by GET.
        self_url = f"{base_url(request)}/{kind}?{urlencode(params)}" if posted else None
        return bundle_answer(request, records.hapi_base, bundle, f"{kind}/_page", self_url, subset)

    async def page(request: Request, records: RecordsDep) -> Response:
        async def work() -> Response:
            query = parse_qsl(request.url.query, keep_blank_values=True)
            if not any(name == "_getpages" for name, _ in query):
                return outcome(400, "required", "a paging link needs its _getpages parameter")
            subset, query = subset_of(query)
            bundle = await records.page(query)
            return bundle_answer(request, records.hapi_base, bundle, f"{kind}/_page", subset=subset)

        return await answer(request, work)

    async def read(resource_id: ResourceId, request: Request, records: RecordsDep) -> Response:
        async def work() -> Response:
            resource = await records.read(kind, resource_id)
            return resource_answer(request, records.hapi_base, resource)

        return await answer(request, work)

    async def vread(
        resource_id: ResourceId, version_id: VersionId, request: Request, records: RecordsDep
    ) -> Response:
        async def work() -> Response:
            resource = await records.vread(kind, resource_id, version_id)
            return resource_answer(request, records.hapi_base, resource)

        return await answer(request, work)

    async def history(resource_id: ResourceId, request: Request, records: RecordsDep) -> Response:
        async def work() -> Response:
            subset, params = subset_of(list(request.query_params.multi_items()))
            bundle = await records.history(kind, resource_id, params)
            path = f"{kind}/{resource_id}/_history"
            return bundle_answer(request, records.hapi_base, bundle, path, subset=subset)

        return await answer(request, work)

    async def type_history(request: Request, records: RecordsDep) -> Response:
        async def work() -> Response:
            subset, params = subset_of(list(request.query_params.multi_items()))
            bundle = await records.type_history(kind, params)
            path = f"{kind}/_history"
            return bundle_answer(request, records.hapi_base, bundle, path, subset=subset)

        return await answer(request, work)

    async def plan(request: Request, records: RecordsDep) -> Response:
        async def work() -> Response:
            bundle = await records.coherent_plan(request.query_params.get("patient"))
            return _plan_answer(request, records, bundle, str(request.url))

        return await answer(request, work)

    async def plan_posted(request: Request, records: RecordsDep) -> Response:
        # An operation by POST, as FHIR clients call it by default: its parameters in a
        # Parameters resource.
        async def work() -> Response:
            asked = parameter(await fhir_body(request), "patient")
            bundle = await records.coherent_plan(asked)
            query = urlencode({"patient": asked or ""})
            self_url = f"{base_url(request)}/{kind}/$coherent-plan?{query}"
            return _plan_answer(request, records, bundle, self_url)

        return await answer(request, work)

    handlers: dict[str, tuple[str, Callable[..., Awaitable[Response]]]] = {
        # Paths with a fixed last step come before the read, which would take it for an id.
        "coherent-plan": (f"/{kind}/$coherent-plan", plan),
        "page": (f"/{kind}/_page", page),
        "history-type": (f"/{kind}/_history", type_history),
        "search": (f"/{kind}", search),
        "history": (f"/{kind}/{{resource_id}}/_history", history),
        "vread": (f"/{kind}/{{resource_id}}/_history/{{version_id}}", vread),
        "read": (f"/{kind}/{{resource_id}}", read),
    }
    for interaction, (path, handler) in handlers.items():
        if interaction in offered:
            router.add_api_route(
                path,
                handler,
                methods=["GET"],
                name=route_name(interaction, kind),
                summary=f"{interaction} {kind}",
                response_class=Response,
                responses={200: {"content": {FHIR_JSON: {}}}},
            )
    if "coherent-plan" in offered:
        router.add_api_route(
            f"/{kind}/$coherent-plan",
            plan_posted,
            methods=["POST"],
            name=route_name("coherent-plan", kind),
            summary=f"coherent-plan {kind} (a Parameters body)",
            response_class=Response,
            responses={200: {"content": {FHIR_JSON: {}}}},
        )
    if "search" in offered:
        router.add_api_route(
            f"/{kind}/_search",
            search_posted,
            methods=["POST"],
            name=route_name("search", kind),
            summary=f"search {kind} (parameters in a form body)",
            response_class=Response,
            responses={200: {"content": {FHIR_JSON: {}}}},
        )


def _plan_answer(
    request: Request, records: CallerRecords, bundle: dict[str, Any], self_url: str
) -> Response:
    """The coherent plan, each entry with its address here."""
    ours = base_url(request)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if "id" in resource:
            entry["fullUrl"] = f"{ours}/{resource['resourceType']}/{resource['id']}"
    return bundle_answer(request, records.hapi_base, bundle, "", self_url)


@router.get(
    "/metadata",
    name="fhir_capabilities",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def capabilities(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """Our CapabilityStatement: the types, interactions, search parameters and profiles offered,
    and where tokens come from (SMART's ``oauth-uris``)."""

    async def work() -> Response:
        ours = str(request.base_url).rstrip("/")
        uris = oauth_uris(endpoints(settings, ours))
        statement = statement_from(await service.hapi_statement(), base_url(request), uris)
        return fhir_response(statement)

    return await answer(request, work)


for _kind in INTERACTIONS:
    _add_routes(_kind)
