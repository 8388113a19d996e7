"""The JSON facade's contract routes: create, read, change and move contracts through their life.

Writes take an optional ``Idempotency-Key``: a retry with the same key and body gets the first
answer, never a second write; the same key with another body is refused (422). Changes name the
version they were based on in ``If-Match``; a stale one gets 409 naming the current version.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from fhir_service.api.audit_trail import AuditTrail, change_by
from fhir_service.api.deps import AccessDep, AuditTrailDep, EngineDep, InstanceDep, StoreDep
from fhir_service.api.labels import Labels, labels_used_by
from fhir_service.api.languages import (
    LANGUAGE_HEADERS,
    AcceptLanguage,
    language_headers,
    negotiated_language,
)
from fhir_service.api.openapi import contract_examples
from fhir_service.api.problems import PROBLEM_JSON, problem_response
from fhir_service.contract import (
    Agreement,
    Contract,
    ContractStatus,
    Identifier,
    IdentifierKind,
    IllegalTransitionError,
    InvalidIdentifierError,
    disclose,
)
from fhir_service.fhir import HapiOutcomeUnknownError, HapiRequestError, HapiUnavailableError
from fhir_service.mapping import unknown_codes
from fhir_service.security import AccessDeniedError, Denial
from fhir_service.servicedb import (
    IdempotencyKeyReusedError,
    IdempotencyStore,
    RequestInProgressError,
    StoredResponse,
    ThisInstance,
)
from fhir_service.store import (
    MAX_SEARCH_COUNT,
    BookedTimeChangedError,
    ContractExistsError,
    ContractNotEditableError,
    ContractNotFoundError,
    ContractStore,
    InvalidSearchError,
    OutsideCompartmentError,
    StaleVersionError,
)

__all__ = ["router"]

_log = logging.getLogger(__name__)

router = APIRouter(prefix="/contracts", tags=["contracts"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_WITHHELD = "withheld from this reader: a draft, or labelled restricted"
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid contract, or Idempotency-Key reused.", **_PROBLEM},
    503: {"description": "HAPI FHIR is unavailable; retry after Retry-After.", **_PROBLEM},
}
# A change names a contract that must exist, and the version it was based on; a create neither.
_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_WRITE_ERRORS,
    404: {"description": "No such contract.", **_PROBLEM},
    409: {
        "description": "Stale version, not editable, or the key's request is running.",
        **_PROBLEM,
    },
    412: {"description": "If-Match is not a version this contract had.", **_PROBLEM},
    428: {"description": "If-Match is missing.", **_PROBLEM},
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
ContractBody = Annotated[Contract, Body(openapi_examples=contract_examples())]
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
    responses={
        **_WRITE_ERRORS,
        409: {"description": "The contract exists, or the key's request is running.", **_PROBLEM},
    },
)
async def create_contract(
    contract: ContractBody,
    request: Request,
    store: StoreDep,
    engine: EngineDep,
    instance: InstanceDep,
    access: AccessDep,
    trail: AuditTrailDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Store a new contract; its id is the client's and must be new."""
    trail.saw_contract(contract)
    if not access.compartment.allows(contract):
        return _outside(trail)
    unknown = _unknown_codes(contract)
    if unknown is not None:
        return unknown

    async def create() -> Response:
        try:
            created = await store.create(contract, author=change_by(access, trail).author)
        except ContractExistsError as exc:
            return _problem(409, "Contract exists", str(exc), currentVersion=exc.version)
        return _contract_response(created, status.HTTP_201_CREATED)

    return await _idempotent(
        request, engine, store, instance, trail, idempotency_key, create, contract.id, created=True
    )


class ContractList(BaseModel):
    """One page of a contract search; ``next`` reads the following page."""

    contracts: list[Contract]
    next: str | None = None
    withheld: bool = Field(
        default=False,
        description="True when this page holds less than matched: a patient is not shown "
        "drafts or restricted content. What was withheld is not said.",
    )
    unreadable: list[str] = Field(
        default_factory=list,
        description="Contracts that matched but could not be read: their stored records were "
        "changed in the FHIR store so that they no longer read as a contract. They are left out "
        "of the page, not allowed to fail it; reading one answers 502 until an operator mends "
        "it. A patient is told only that something was withheld.",
    )
    # Beside the contracts, not in them: a contract is read to be written back as it was.
    labels: Labels = Field(
        default_factory=dict,
        description="The name of every code the contracts on this page hold, in the language "
        "of Content-Language (Accept-Language, else Swedish): by code table, then code.",
    )


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
    responses={
        200: {"description": "A page of contracts.", "headers": LANGUAGE_HEADERS},
        422: {"description": "An invalid criterion.", **_PROBLEM},
        503: _WRITE_ERRORS[503],
    },
)
async def search_contracts(
    request: Request,
    store: StoreDep,
    access: AccessDep,
    trail: AuditTrailDep,
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
    accept_language: AcceptLanguage = None,
) -> Response:
    """Contracts matching every criterion given, oldest first, a page at a time.

    A patient's token searches only that patient's contracts and a care unit's token only that
    unit's: the walls are added to the criteria (and to the paging cursor), and asking for
    another patient or unit explicitly is refused. The names of the page's codes come along in
    ``labels``, in the language Accept-Language asks for (Swedish by default).
    """
    unknown = _unknown_parameters(request)
    if unknown:
        # A misspelt or unsupported criterion (``_include``, a chain) would otherwise widen the
        # search silently instead of narrowing it.
        return _problem(422, "Invalid search", f"unknown search parameters: {', '.join(unknown)}")
    walls = access.compartment
    try:
        patient_criterion = _within(_pair(patient), walls.patient)
        unit_criterion = _within(_pair(care_unit), walls.organization)
    except AccessDeniedError as exc:
        return _forbidden(trail, exc)
    try:
        page = await store.search(
            patient=patient_criterion,
            status=status_,
            care_unit=unit_criterion,
            care_contact=_pair(care_contact),
            period_from=period_from,
            period_to=period_to,
            count=count,
            cursor=cursor,
        )
    except InvalidSearchError as exc:
        return _problem(422, "Invalid search", str(exc))
    disclosed = [disclose(c, walls.organization) for c in page.contracts]
    shown = [d.contract for d in disclosed if d.contract is not None]
    for contract in shown:
        trail.saw_contract(contract)
    following = None
    if page.next_cursor is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        following = f"/contracts?{urlencode([*query, ('cursor', page.next_cursor)])}"
    language = negotiated_language(None, accept_language)
    # Whose an unreadable contract is cannot be checked against what a patient may see (it may
    # be a draft): a patient hears only that something was withheld.
    named = list(page.unreadable) if walls.patient is None else []
    body = ContractList(
        contracts=shown,
        next=following,
        withheld=any(d.withheld for d in disclosed) or len(named) < len(page.unreadable),
        unreadable=named,
        labels=labels_used_by(shown, language),
    )
    return JSONResponse(body.model_dump(mode="json"), headers=language_headers(language))


def _unknown_parameters(request: Request) -> list[str]:
    route = request.scope["route"]
    known = {field.alias for field in route.dependant.query_params}
    return sorted({name for name in request.query_params if name not in known})[:10]


@router.get(
    "/{contract_id}",
    response_model=Contract,
    responses={
        200: {
            "description": "The contract, as far as the reader may see it.",
            "headers": {
                "ETag": {"description": 'The version, W/"<n>".', "schema": {"type": "string"}},
                "Withheld": {
                    "description": "true when a patient is not shown part of the contract "
                    "(goals or agreed times labelled restricted); what, is not said.",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
        },
        404: {"description": "No such contract.", **_PROBLEM},
        503: _WRITE_ERRORS[503],
    },
)
async def read_contract(
    contract_id: ContractIdPath, store: StoreDep, access: AccessDep, trail: AuditTrailDep
) -> Response:
    """The contract as stored, with its version in the body and the ``ETag``."""
    try:
        contract = await store.read(contract_id)
    except ContractNotFoundError as exc:
        return _problem(404, "Not Found", str(exc))
    trail.saw_contract(contract)
    if not access.compartment.allows(contract):
        # Answered as absent: whether another patient's contract exists is not the caller's
        # business. The audit record says what really happened.
        trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
        return _problem(404, "Not Found", str(ContractNotFoundError(contract_id)))
    disclosed = disclose(contract, access.compartment.organization)
    if disclosed.contract is None:
        trail.refused(_WITHHELD)
        return _problem(404, "Not Found", str(ContractNotFoundError(contract_id)))
    response = _contract_response(disclosed.contract, status.HTTP_200_OK)
    if disclosed.withheld:
        response.headers["Withheld"] = "true"
    return response


@router.put("/{contract_id}", response_model=Contract, responses=_CHANGE_ERRORS)
async def update_contract(
    contract_id: ContractIdPath,
    contract: ContractBody,
    request: Request,
    store: StoreDep,
    engine: EngineDep,
    instance: InstanceDep,
    access: AccessDep,
    trail: AuditTrailDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Replace the contents of a draft or of a contract under revision."""
    if contract.id != contract_id:
        return _problem(422, "Invalid contract", "the body's id differs from the one in the URL")
    unknown = _unknown_codes(contract)
    if unknown is not None:
        return unknown

    async def update(version: int) -> Contract:
        return await store.update(contract, version, change_by(access, trail))

    return await _idempotent(
        request,
        engine,
        store,
        instance,
        trail,
        idempotency_key,
        lambda: _versioned(contract_id, if_match, trail, update),
        contract_id,
    )


def _transition_route(action: str, summary: str, to: ContractStatus) -> None:
    @router.post(
        f"/{{contract_id}}/{action}",
        response_model=Contract,
        responses=_CHANGE_ERRORS,
        summary=summary,
        name=f"{action}_contract",
    )
    async def transition(
        contract_id: ContractIdPath,
        request: Request,
        store: StoreDep,
        engine: EngineDep,
        instance: InstanceDep,
        access: AccessDep,
        trail: AuditTrailDep,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        async def move(version: int) -> Contract:
            return await store.step(contract_id, to, version, change_by(access, trail))

        return await _idempotent(
            request,
            engine,
            store,
            instance,
            trail,
            idempotency_key,
            lambda: _versioned(contract_id, if_match, trail, move),
            contract_id,
        )


_transition_route("revise", "Open an agreed contract for revision", ContractStatus.REVISED)
_transition_route("complete", "The contract has done its job", ContractStatus.COMPLETED)
_transition_route("end", "The contract stops before it is done", ContractStatus.ENDED)
_transition_route("revoke", "The contract is withdrawn", ContractStatus.REVOKED)


@router.post("/{contract_id}/agree", response_model=Contract, responses=_CHANGE_ERRORS)
async def agree_contract(
    contract_id: ContractIdPath,
    request: Request,
    store: StoreDep,
    engine: EngineDep,
    instance: InstanceDep,
    body: Annotated[AgreeBody, Body()],
    access: AccessDep,
    trail: AuditTrailDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Record the patient's and the responsible clinician's agreement to this version."""

    async def agree(version: int) -> Contract:
        return await store.agree(contract_id, version, body.agreements, change_by(access, trail))

    return await _idempotent(
        request,
        engine,
        store,
        instance,
        trail,
        idempotency_key,
        lambda: _versioned(contract_id, if_match, trail, agree),
        contract_id,
    )


async def _versioned(
    contract_id: str,
    if_match: str | None,
    trail: AuditTrail,
    write: Callable[[int], Awaitable[Contract]],
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
    except OutsideCompartmentError as exc:
        trail.saw_contract(exc.contract)
        trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
        return _problem(404, "Not Found", str(exc))
    except ContractNotFoundError as exc:
        return _problem(404, "Not Found", str(exc))
    except AccessDeniedError as exc:
        return _forbidden(trail, exc)
    except StaleVersionError as exc:
        return _problem(409, "Stale version", str(exc), currentVersion=exc.current)
    except (ContractNotEditableError, IllegalTransitionError, BookedTimeChangedError) as exc:
        return _problem(409, "Not allowed now", str(exc))
    trail.saw_contract(written)
    return _contract_response(written, status.HTTP_200_OK)


async def _idempotent(
    request: Request,
    engine: Engine,
    store: ContractStore,
    instance: ThisInstance,
    trail: AuditTrail,
    key: str | None,
    handle: Callable[[], Awaitable[Response]],
    contract_id: str,
    *,
    created: bool = False,
) -> Response:
    """Run ``handle`` once per ``key``: the first answer is given again to every retry.

    The key is claimed before anything reaches HAPI (a 503 if it cannot be, nothing written).
    Its writes carry a tag of the key (``trail.write_key``), so that a retry of a request that
    never got its answer (HAPI did not answer, or the instance running it died), refused as a
    conflict because that request did write, finds the write and answers as it would have.
    """
    if key is None:
        return await handle()
    keys = IdempotencyStore(engine)
    # Keys are the caller's own: another caller's key never replays this caller's answer.
    scope = f"{trail.caller.key} {request.method} {request.url.path}"
    body = await request.body()
    try:
        stored = await asyncio.to_thread(keys.begin, scope, key, body, instance.id)
    except IdempotencyKeyReusedError as exc:
        return _problem(422, "Idempotency-Key reused", str(exc))
    except RequestInProgressError as exc:
        return problem_response(409, "Request in progress", str(exc), headers={"Retry-After": "1"})
    except SQLAlchemyError:
        _log.exception("an Idempotency-Key could not be claimed")
        return problem_response(
            503,
            "Service Unavailable",
            "The Idempotency-Key could not be claimed, so the request was not run; nothing "
            "was written. Retry after the pause.",
            headers={"Retry-After": "5"},
        )
    if isinstance(stored, StoredResponse):
        replay = _replayed(stored.status, stored.body)
        replay.headers["Idempotency-Replayed"] = "true"
        return replay
    trail.write_key = hashlib.sha256(f"{scope} {key}".encode()).hexdigest()[:40]
    try:
        response = await handle()
    except BaseException as exc:
        # Only a refusal or an unreachable HAPI says nothing was written; anything else (no
        # answer in time, a bug, a dropped client) leaves the key for a retry to find out.
        nothing_written = isinstance(exc, HapiUnavailableError | HapiRequestError) and not (
            isinstance(exc, HapiOutcomeUnknownError)
        )
        await _settle(keys.abandon if nothing_written else keys.unknown, scope, key)
        raise
    if response.status_code == status.HTTP_409_CONFLICT and await store.wrote(trail.write_key):
        # An earlier try with this key made the write; this one ran into it.
        current = await store.read(contract_id)
        response = _contract_response(current, 201 if created else 200)
        response.headers["Idempotency-Replayed"] = "true"
    if response.status_code >= 500:
        await _settle(keys.abandon, scope, key)
    else:
        answer = bytes(response.body).decode("utf-8")
        await _settle(keys.complete, scope, key, response.status_code, answer)
    return response


async def _settle(step: Callable[..., None], *args: object) -> None:
    # The answer goes out either way: a key that cannot be settled is taken over by a retry
    # once this instance is missed or the key has run longer than any request (LONGEST_REQUEST),
    # and the retry finds out what was written.
    try:
        await asyncio.to_thread(step, *args)
    except SQLAlchemyError:
        _log.exception("an Idempotency-Key could not be settled")


def _contract_response(contract: Contract, status_code: int) -> Response:
    # Serialized by pydantic-core straight to bytes, not to a dict for json.dumps: a third of
    # the time, and every read of a contract goes through here.
    return Response(
        contract.model_dump_json(),
        status_code=status_code,
        headers=_contract_headers(contract, status_code),
        media_type="application/json",
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


def _within(asked: tuple[str, str] | None, wall: Identifier | None) -> tuple[str, str] | None:
    """A search criterion inside the compartment: the wall itself, or what was asked if equal."""
    if wall is None:
        return asked
    if asked is not None and _identifier(asked) not in (None, wall):
        raise AccessDeniedError(Denial.OUTSIDE_COMPARTMENT)
    if asked is not None and _identifier(asked) is None:
        # Not an identifier at all: the store refuses it (422) before HAPI is asked.
        return asked
    return wall.kind.value, wall.value


def _identifier(pair: tuple[str, str]) -> Identifier | None:
    # Compared as identifiers, so that 19121212-1212 and 191212121212 are one patient.
    try:
        return Identifier(kind=IdentifierKind(pair[0]), value=pair[1])
    except (ValueError, InvalidIdentifierError):
        return None


def _outside(trail: AuditTrail) -> JSONResponse:
    return _forbidden(trail, AccessDeniedError(Denial.OUTSIDE_COMPARTMENT))


def _forbidden(trail: AuditTrail, exc: AccessDeniedError) -> JSONResponse:
    trail.refused(exc.denial.value)
    return _problem(403, "Forbidden", exc.denial.value)


def _pair(token: str | None) -> tuple[str, str] | None:
    if token is None:
        return None
    kind, _, value = token.partition("|")
    return kind, value


def _version_of(etag: str) -> int | None:
    value = etag.strip().removeprefix("W/").strip('"')
    return int(value) if value.isdigit() else None


def _unknown_codes(contract: Contract) -> JSONResponse | None:
    """A 422 naming each code of ``contract`` our tables (or its units) do not hold; None."""
    unknown = unknown_codes(contract)
    if not unknown:
        return None
    errors = [{"location": path, "message": message} for path, message in unknown]
    return _problem(422, "Unknown codes", "the contract uses codes we do not know", errors=errors)


def _problem(status_code: int, title: str, detail: str, **extensions: Any) -> JSONResponse:
    return problem_response(status_code, title, detail, **extensions)
