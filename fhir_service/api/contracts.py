"""The JSON facade's contract routes: create, read, change and move contracts through their life.

Writes take an optional ``Idempotency-Key``: a retry with the same key and body gets the first
answer, never a second write; the same key with another body is refused (422). Changes name the
version they were based on in ``If-Match``; a stale one gets 409 naming the current version.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from fhir_service.api.deps import EngineDep, StoreDep
from fhir_service.api.problems import PROBLEM_JSON, problem_response
from fhir_service.contract import Agreement, Contract
from fhir_service.contract.lifecycle import IllegalTransitionError
from fhir_service.sync.idempotency import (
    IdempotencyKeyReusedError,
    IdempotencyStore,
    RequestInProgressError,
)
from fhir_service.sync.store import (
    MAX_SEARCH_COUNT,
    ContractExistsError,
    ContractNotEditableError,
    ContractNotFoundError,
    ContractStore,
    InvalidSearchError,
    StaleVersionError,
)

__all__ = ["router"]

router = APIRouter(prefix="/contracts", tags=["contracts"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Stale version, not editable, or the key's request is running.",
        **_PROBLEM,
    },
    412: {"description": "If-Match is not a version this contract had.", **_PROBLEM},
    422: {"description": "Invalid contract, or Idempotency-Key reused.", **_PROBLEM},
    428: {"description": "If-Match is missing.", **_PROBLEM},
    503: {"description": "HAPI FHIR is unavailable; retry after Retry-After.", **_PROBLEM},
}

ContractIdPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$", description="The contract's id.")
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes a retried write safe: the same key and body get the first answer.",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='The version read, as its ETag: W/"3".'),
]


class AgreeBody(BaseModel):
    """The agreements that make the current version agreed."""

    model_config = ConfigDict(extra="forbid")

    agreements: tuple[Agreement, ...]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Contract,
    responses={**_WRITE_ERRORS, 409: {"description": "The contract exists.", **_PROBLEM}},
)
async def create_contract(
    contract: Contract,
    request: Request,
    store: StoreDep,
    engine: EngineDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Store a new contract; its id is the client's and must be new."""

    async def create() -> Response:
        try:
            created = await store.create(contract)
        except ContractExistsError as exc:
            return _problem(409, "Contract exists", str(exc), currentVersion=exc.version)
        return _contract_response(created, status.HTTP_201_CREATED)

    return await _idempotent(request, engine, idempotency_key, create)


class ContractList(BaseModel):
    """One page of a contract search; ``next`` reads the following page."""

    contracts: list[Contract]
    next: str | None = None


IdentifierParam = Annotated[
    str | None,
    Query(
        pattern=r"^[a-z\-]+\|.+$",
        description="An identifier as kind|value, e.g. personnummer|19121212-1212.",
    ),
]


@router.get(
    "",
    response_model=ContractList,
    responses={422: {"description": "An invalid criterion.", **_PROBLEM}, 503: _WRITE_ERRORS[503]},
)
async def search_contracts(
    request: Request,
    store: StoreDep,
    patient: IdentifierParam = None,
    status_: Annotated[
        list[str] | None, Query(alias="status", description="Any of these statuses.")
    ] = None,
    care_unit: Annotated[
        str | None,
        Query(
            alias="careUnit",
            pattern=r"^[a-z\-]+\|.+$",
            description="The responsible care unit as kind|value (hsa-id, organisasjonsnummer).",
        ),
    ] = None,
    care_contact: Annotated[
        str | None,
        Query(
            alias="careContact",
            pattern=r"^[a-z\-]+\|.+$",
            description="The fast vårdkontakt / personlig koordinator as kind|value.",
        ),
    ] = None,
    period_from: Annotated[date | None, Query(alias="periodFrom")] = None,
    period_to: Annotated[date | None, Query(alias="periodTo")] = None,
    count: Annotated[int, Query(ge=1, le=MAX_SEARCH_COUNT)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Contracts matching every criterion given, oldest first, a page at a time."""
    try:
        page = await store.search(
            patient=_pair(patient),
            status=status_,
            care_unit=_pair(care_unit),
            care_contact=_pair(care_contact),
            period_from=period_from,
            period_to=period_to,
            count=count,
            cursor=cursor,
        )
    except InvalidSearchError as exc:
        return _problem(422, "Invalid search", str(exc))
    following = None
    if page.next_cursor is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        following = f"/contracts?{urlencode([*query, ('cursor', page.next_cursor)])}"
    body = ContractList(contracts=list(page.contracts), next=following)
    return JSONResponse(body.model_dump(mode="json"))


@router.get(
    "/{contract_id}",
    response_model=Contract,
    responses={404: {"description": "No such contract.", **_PROBLEM}, 503: _WRITE_ERRORS[503]},
)
async def read_contract(contract_id: ContractIdPath, store: StoreDep) -> Response:
    """The contract as stored, with its version in the body and the ``ETag``."""
    try:
        contract = await store.read(contract_id)
    except ContractNotFoundError as exc:
        return _problem(404, "Not Found", str(exc))
    return _contract_response(contract, status.HTTP_200_OK)


@router.put("/{contract_id}", response_model=Contract, responses=_WRITE_ERRORS)
async def update_contract(
    contract_id: ContractIdPath,
    contract: Contract,
    request: Request,
    store: StoreDep,
    engine: EngineDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Replace the contents of a draft or of a contract under revision."""
    if contract.id != contract_id:
        return _problem(422, "Invalid contract", "the body's id differs from the one in the URL")

    async def update(version: int) -> Contract:
        return await store.update(contract, version)

    return await _idempotent(
        request, engine, idempotency_key, lambda: _versioned(contract_id, if_match, update)
    )


def _transition_route(
    action: str, summary: str, step: Callable[[ContractStore, str, int], Awaitable[Contract]]
) -> None:
    @router.post(
        f"/{{contract_id}}/{action}",
        response_model=Contract,
        responses=_WRITE_ERRORS,
        summary=summary,
        name=f"{action}_contract",
    )
    async def transition(
        contract_id: ContractIdPath,
        request: Request,
        store: StoreDep,
        engine: EngineDep,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        async def move(version: int) -> Contract:
            return await step(store, contract_id, version)

        return await _idempotent(
            request, engine, idempotency_key, lambda: _versioned(contract_id, if_match, move)
        )


_transition_route("revise", "Open an agreed contract for revision", lambda s, c, v: s.revise(c, v))
_transition_route("complete", "The contract has done its job", lambda s, c, v: s.complete(c, v))
_transition_route("end", "The contract stops before it is done", lambda s, c, v: s.end(c, v))
_transition_route("revoke", "The contract is withdrawn", lambda s, c, v: s.revoke(c, v))


@router.post("/{contract_id}/agree", response_model=Contract, responses=_WRITE_ERRORS)
async def agree_contract(
    contract_id: ContractIdPath,
    request: Request,
    store: StoreDep,
    engine: EngineDep,
    body: Annotated[AgreeBody, Body()],
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Record the patient's and the responsible clinician's agreement to this version."""

    async def agree(version: int) -> Contract:
        return await store.agree(contract_id, version, body.agreements)

    return await _idempotent(
        request, engine, idempotency_key, lambda: _versioned(contract_id, if_match, agree)
    )


async def _versioned(
    contract_id: str, if_match: str | None, write: Callable[[int], Awaitable[Contract]]
) -> Response:
    if if_match is None:
        return _problem(
            428, "Precondition Required", 'send If-Match with the version you read, e.g. W/"3"'
        )
    version = _version_of(if_match)
    if version is None:
        return _problem(412, "Precondition Failed", f"If-Match {if_match!r} is not a version")
    try:
        written = await write(version)
    except ContractNotFoundError as exc:
        return _problem(404, "Not Found", str(exc))
    except StaleVersionError as exc:
        return _problem(409, "Stale version", str(exc), currentVersion=exc.current)
    except (ContractNotEditableError, IllegalTransitionError) as exc:
        return _problem(409, "Not allowed now", str(exc))
    return _contract_response(written, status.HTTP_200_OK)


async def _idempotent(
    request: Request,
    engine: Engine,
    key: str | None,
    handle: Callable[[], Awaitable[Response]],
) -> Response:
    if key is None:
        return await handle()
    keys = IdempotencyStore(engine)
    scope = f"{request.method} {request.url.path}"
    body = await request.body()
    try:
        stored = await asyncio.to_thread(keys.begin, scope, key, body)
    except IdempotencyKeyReusedError as exc:
        return _problem(422, "Idempotency-Key reused", str(exc))
    except RequestInProgressError as exc:
        return problem_response(409, "Request in progress", str(exc), headers={"Retry-After": "1"})
    if stored is not None:
        replay = _replayed(stored.status, stored.body)
        replay.headers["Idempotency-Replayed"] = "true"
        return replay
    try:
        response = await handle()
    except BaseException:
        await asyncio.to_thread(keys.abandon, scope, key)
        raise
    if response.status_code >= 500:
        await asyncio.to_thread(keys.abandon, scope, key)
    else:
        answer = bytes(response.body).decode("utf-8")
        await asyncio.to_thread(keys.complete, scope, key, response.status_code, answer)
    return response


def _contract_response(contract: Contract, status_code: int) -> JSONResponse:
    return JSONResponse(
        contract.model_dump(mode="json"),
        status_code=status_code,
        headers=_contract_headers(contract, status_code),
    )


def _contract_headers(contract: Contract, status_code: int) -> dict[str, str]:
    headers = {"ETag": f'W/"{contract.version}"'}
    if status_code == status.HTTP_201_CREATED:
        headers["Location"] = f"/contracts/{contract.id}"
    return headers


def _replayed(status_code: int, body: str) -> Response:
    content = json.loads(body)
    if status_code < 300:
        contract = Contract.model_validate(content)
        return JSONResponse(content, status_code, headers=_contract_headers(contract, status_code))
    return JSONResponse(content, status_code, media_type=PROBLEM_JSON)


def _pair(token: str | None) -> tuple[str, str] | None:
    if token is None:
        return None
    kind, _, value = token.partition("|")
    return kind, value


def _version_of(etag: str) -> int | None:
    value = etag.strip().removeprefix("W/").strip('"')
    return int(value) if value.isdigit() else None


def _problem(status_code: int, title: str, detail: str, **extensions: Any) -> JSONResponse:
    return problem_response(status_code, title, detail, **extensions)
