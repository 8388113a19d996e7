"""``PUT /fhir/{type}/{id}`` and ``POST /fhir/{type}``: one record of a contract, changed or added
(`fhir_service.records.writes` says how).

An update may name the version it changes in ``If-Match`` (412 when it is not the current one);
without it, as in HAPI, it changes the current one. A create with ``If-None-Exist`` (or, as
fhirpy sends it, a search in its own query) answers the one record its condition finds (200)
instead of adding one. A CarePlan is updated, not created:
a contract is created as a transaction Bundle of its records (``POST /fhir``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Request, Response

from fhir_service.api.deps import RecordsDep
from fhir_service.api.fhir.answers import answer, resource_answer
from fhir_service.api.fhir.bodies import fhir_body, parameter
from fhir_service.api.fhir.outcomes import FHIR_JSON
from fhir_service.api.fhir.types import INTERACTIONS, route_name

__all__ = ["router"]

router = APIRouter(prefix="/fhir", tags=["fhir"])

ResourceId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The resource's logical id.")
]


def _condition(request: Request) -> list[tuple[str, str]] | None:
    """A conditional create's search: ``If-None-Exist`` as a query or as a whole search URL
    (HAPI's client sends one), as HAPI takes it, else the create's own query, as fhirpy's
    ``get_or_create()`` sends it (Aidbox's form); None for a plain create."""
    exists = request.headers.get("if-none-exist")
    query = request.url.query if exists is None else exists.split("?", 1)[-1]
    asked = [(n, v) for n, v in parse_qsl(query, keep_blank_values=True) if n != "_format"]
    return asked if exists is not None or asked else None


def _add_routes(kind: str) -> None:
    offered = INTERACTIONS[kind]

    async def update(resource_id: ResourceId, request: Request, records: RecordsDep) -> Response:
        async def work() -> Response:
            resource = await fhir_body(request)
            if_match = request.headers.get("if-match")
            written = await records.update(kind, resource_id, resource, if_match)
            return resource_answer(request, records.hapi_base, written.resource)

        return await answer(request, work)

    async def create(request: Request, records: RecordsDep) -> Response:
        async def work() -> Response:
            resource = await fhir_body(request)
            condition = _condition(request)
            written = await records.create(kind, resource, condition)
            status = 201 if written.created else 200
            return resource_answer(request, records.hapi_base, written.resource, status)

        return await answer(request, work)

    handlers: dict[str, tuple[str, str, Callable[..., Awaitable[Response]]]] = {
        "create": ("POST", f"/{kind}", create),
        "update": ("PUT", f"/{kind}/{{resource_id}}", update),
    }
    for interaction, (method, path, handler) in handlers.items():
        if interaction in offered:
            router.add_api_route(
                path,
                handler,
                methods=[method],
                name=route_name(interaction, kind),
                summary=f"{interaction} {kind}",
                response_class=Response,
                responses={200 if interaction == "update" else 201: {"content": {FHIR_JSON: {}}}},
            )


for _kind in INTERACTIONS:
    _add_routes(_kind)


@router.post(
    "/CarePlan/{resource_id}/$propose",
    name=route_name("propose", "CarePlan"),
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def propose(resource_id: ResourceId, request: Request, records: RecordsDep) -> Response:
    """Put the contract's version (``If-Match``) to the patient for their agreement."""

    async def work() -> Response:
        careplan = await records.propose(resource_id, request.headers.get("if-match"))
        return resource_answer(request, records.hapi_base, careplan)

    return await answer(request, work)


def _party_act(operation: str, names: tuple[str, ...], summary: str) -> None:
    """``POST /fhir/CarePlan/{id}/$<operation>``: a party's act on the contract, its
    ``Parameters`` ``names`` passed on as given; ``If-Match`` names the version acted on."""

    async def act(resource_id: ResourceId, request: Request, records: RecordsDep) -> Response:
        async def work() -> Response:
            body = await fhir_body(request)
            said = {name: parameter(body, name) for name in names}
            acts = {
                "sign": records.sign,
                "progress": records.progress,
                "proposal": records.proposal,
            }
            call = acts[operation]
            careplan = await call(resource_id, said, request.headers.get("if-match"))
            return resource_answer(request, records.hapi_base, careplan)

        return await answer(request, work)

    router.add_api_route(
        f"/CarePlan/{{resource_id}}/${operation}",
        act,
        methods=["POST"],
        name=route_name(operation, "CarePlan"),
        summary=summary,
        response_class=Response,
        responses={200: {"content": {FHIR_JSON: {}}}},
    )


_party_act(
    "sign",
    ("decision", "comment"),
    "Answer the contract's version (If-Match) in one's own name: decision agree or decline, "
    "and a comment when declining",
)
_party_act(
    "progress",
    ("activity", "status", "note", "at"),
    "Report how an activity goes: its id in the CarePlan, its status, a note and when",
)
_party_act(
    "proposal",
    ("kind", "text", "about"),
    "The patient proposes a change in their own words: a goal, resource or wish, or a change "
    "of a goal, activity or agreed time (about)",
)
