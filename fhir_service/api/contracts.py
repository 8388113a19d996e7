"""The JSON facade's contract routes: create, read, change and move contracts through their life.

Each route parses the request, makes one call to the caller's contracts (`CallerContracts`)
and says the answer in HTTP; refusals become problems in `fhir_service.api.problems`. Writes
take an optional ``Idempotency-Key`` (`fhir_service.api.replays`). Changes name the version
they were based on in ``If-Match``; a stale one gets 409 naming the current version.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from fhir_service.api.deps import ContractsDep
from fhir_service.api.labels import Labels, labels_used_by
from fhir_service.api.languages import (
    LANGUAGE_HEADERS,
    AcceptLanguage,
    language_headers,
    negotiated_language,
)
from fhir_service.api.openapi import contract_examples
from fhir_service.api.problems import PROBLEM_JSON, problem_response
from fhir_service.api.replays import REPLAYED, keyed
from fhir_service.contract import (
    ActivityStatus,
    Agreement,
    Contract,
    ContractStatus,
    ProposalKind,
    ProposalStatus,
    ShortText,
    Text,
)
from fhir_service.records import (
    ContractCriteria,
    ContractWritten,
    Decision,
    ProgressAsked,
    ProposalAsked,
)
from fhir_service.store import MAX_SEARCH_COUNT

__all__ = ["router"]

router = APIRouter(prefix="/contracts", tags=["contracts"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
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
KeyPath = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$",
        description="The key of an activity or a proposal within the contract.",
    ),
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
    """The agreements that make the current version agreed, given elsewhere (on paper, in the
    EHR) and recorded by the caller: each is stored as attested, whatever ``attested`` says."""

    model_config = ConfigDict(extra="forbid")

    agreements: tuple[Agreement, ...]


class SignBody(BaseModel):
    """A party's answer, in their own name, to the version they were shown."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision = Field(
        description="agree: sign this version; decline: the patient says no to it."
    )
    comment: Text | None = Field(
        default=None, description="Why the patient declines, in their own words."
    )


class ProgressBody(BaseModel):
    """How an activity goes, as its owner (or the care unit) reports it."""

    model_config = ConfigDict(extra="forbid")

    status: ActivityStatus = Field(
        description="not-started, in-progress, completed or on-hold: the activity's status."
    )
    note: ShortText | None = Field(
        default=None, description="A short note in the reporter's own words (500 characters)."
    )
    at: AwareDatetime | None = Field(
        default=None, description="When it was so, if not now; not in the future."
    )


class ProposalBody(BaseModel):
    """A change the patient asks for, in their own words."""

    model_config = ConfigDict(extra="forbid")

    kind: ProposalKind = Field(
        description="goal, resource or wish to add (a goal naming one in about changes it), or "
        "a change of an activity or an agreed time (naming it in about)."
    )
    text: Text = Field(description="What they ask for, in their own words.")
    about: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$",
        description="The key of the goal, activity or agreed time it asks to change.",
    )


class ProposalAnswerBody(BaseModel):
    """The care unit's answer to a proposal."""

    model_config = ConfigDict(extra="forbid")

    decision: ProposalStatus = Field(
        description="taken (into the contract, by a change of it) or declined."
    )
    reason: Text | None = Field(
        default=None, description="Why it was declined, for the patient to read."
    )


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
    contracts: ContractsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Store a new contract; its id is the client's and must be new."""

    async def create() -> Response:
        return _written(await contracts.create(contract), status.HTTP_201_CREATED)

    return await keyed(request, contracts.replays, idempotency_key, create, _replayed)


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
    contracts: ContractsDep,
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
        return problem_response(
            422, "Invalid search", f"unknown search parameters: {', '.join(unknown)}"
        )
    page = await contracts.search(
        ContractCriteria(
            patient=_pair(patient),
            status=status_,
            care_unit=_pair(care_unit),
            care_contact=_pair(care_contact),
            period_from=period_from,
            period_to=period_to,
            count=count,
            cursor=cursor,
        )
    )
    following = None
    if page.next_cursor is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        following = f"/contracts?{urlencode([*query, ('cursor', page.next_cursor)])}"
    language = negotiated_language(None, accept_language)
    body = ContractList(
        contracts=list(page.contracts),
        next=following,
        withheld=page.withheld,
        unreadable=list(page.unreadable),
        labels=labels_used_by(page.contracts, language),
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
async def read_contract(contract_id: ContractIdPath, contracts: ContractsDep) -> Response:
    """The contract as stored, with its version in the body and the ``ETag``."""
    shown = await contracts.read(contract_id)
    response = _contract_response(shown.contract, status.HTTP_200_OK)
    if shown.withheld:
        response.headers["Withheld"] = "true"
    return response


@router.put("/{contract_id}", response_model=Contract, responses=_CHANGE_ERRORS)
async def update_contract(
    contract_id: ContractIdPath,
    contract: ContractBody,
    request: Request,
    contracts: ContractsDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Replace the contents of a draft or of a contract under revision."""

    async def update() -> Response:
        return _written(await contracts.update(contract_id, contract, if_match))

    return await keyed(request, contracts.replays, idempotency_key, update, _replayed)


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
        contracts: ContractsDep,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        async def step() -> Response:
            return _written(await contracts.step(contract_id, to, if_match))

        return await keyed(request, contracts.replays, idempotency_key, step, _replayed)


_transition_route("revise", "Open an agreed contract for revision", ContractStatus.REVISED)
_transition_route("complete", "The contract has done its job", ContractStatus.COMPLETED)
_transition_route("end", "The contract stops before it is done", ContractStatus.ENDED)
_transition_route("revoke", "The contract is withdrawn", ContractStatus.REVOKED)


@router.post("/{contract_id}/agree", response_model=Contract, responses=_CHANGE_ERRORS)
async def agree_contract(
    contract_id: ContractIdPath,
    request: Request,
    body: Annotated[AgreeBody, Body()],
    contracts: ContractsDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Record the patient's and the responsible clinician's agreement to this version."""

    async def agree() -> Response:
        return _written(await contracts.agree(contract_id, body.agreements, if_match))

    return await keyed(request, contracts.replays, idempotency_key, agree, _replayed)


@router.post("/{contract_id}/propose", response_model=Contract, responses=_CHANGE_ERRORS)
async def propose_contract(
    contract_id: ContractIdPath,
    request: Request,
    contracts: ContractsDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Put this version (a draft or a revision) to the patient: it awaits their agreement."""

    async def propose() -> Response:
        return _written(await contracts.propose(contract_id, if_match))

    return await keyed(request, contracts.replays, idempotency_key, propose, _replayed)


@router.post("/{contract_id}/sign", response_model=Contract, responses=_CHANGE_ERRORS)
async def sign_contract(
    contract_id: ContractIdPath,
    request: Request,
    body: Annotated[SignBody, Body()],
    contracts: ContractsDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Agree to this version in one's own name, or (the patient) decline it with a comment.

    The patient signs with their own token, once the unit has put the version to them; a
    clinician of the responsible unit with theirs. The second signature of the same contents
    makes the contract agreed; a change in between voids the first.
    """

    async def sign() -> Response:
        return _written(await contracts.sign(contract_id, body.decision, body.comment, if_match))

    return await keyed(request, contracts.replays, idempotency_key, sign, _replayed)


@router.post(
    "/{contract_id}/activities/{key}/progress",
    response_model=Contract,
    responses=_CHANGE_ERRORS,
)
async def report_progress(
    contract_id: ContractIdPath,
    key: KeyPath,
    request: Request,
    body: Annotated[ProgressBody, Body()],
    contracts: ContractsDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Report how an activity goes: the patient on their own activities, the care unit on any.

    Sets the activity's status with who reported it, when and their note; needs no new
    agreement. ``If-Match`` is optional: without it the report is of the contract as it is now.
    """
    asked = ProgressAsked(contract_id, key, body.status, body.note, body.at)

    async def progress() -> Response:
        return _written(await contracts.report_progress(asked, if_match))

    return await keyed(request, contracts.replays, idempotency_key, progress, _replayed)


@router.post("/{contract_id}/proposals", response_model=Contract, responses=_CHANGE_ERRORS)
async def add_proposal(
    contract_id: ContractIdPath,
    request: Request,
    body: Annotated[ProposalBody, Body()],
    contracts: ContractsDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The patient proposes a change in their own words; it stays open with the contract until
    the care unit takes it into a version or declines it. ``If-Match`` is optional."""
    asked = ProposalAsked(contract_id, body.kind, body.text, body.about)

    async def propose() -> Response:
        return _written(await contracts.add_proposal(asked, if_match))

    return await keyed(request, contracts.replays, idempotency_key, propose, _replayed)


@router.post(
    "/{contract_id}/proposals/{key}/answer", response_model=Contract, responses=_CHANGE_ERRORS
)
async def answer_proposal(
    contract_id: ContractIdPath,
    key: KeyPath,
    request: Request,
    body: Annotated[ProposalAnswerBody, Body()],
    contracts: ContractsDep,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The care unit takes the patient's proposal into the contract, or declines it saying
    why. ``If-Match`` is optional."""
    asked = (contract_id, key, body.decision, body.reason)

    async def answer() -> Response:
        return _written(await contracts.answer_proposal(asked, if_match))

    return await keyed(request, contracts.replays, idempotency_key, answer, _replayed)


def _written(written: ContractWritten, status_code: int = status.HTTP_200_OK) -> Response:
    response = _contract_response(written.contract, status_code)
    if written.replayed:
        response.headers[REPLAYED] = "true"
    return response


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


def _replayed(status_code: int, content: object) -> Response:
    contract = Contract.model_validate(content)
    return JSONResponse(content, status_code, headers=_contract_headers(contract, status_code))


def _pair(token: str | None) -> tuple[str, str] | None:
    if token is None:
        return None
    kind, _, value = token.partition("|")
    return kind, value
