"""The patient's coherent plan: every contract in force, across care units, as one response,
or as a page for the patient. Who may read it and what they see: `fhir_service.records.plan_access`.

Both forms are in the reader's language: the page throughout, the JSON answer in the names of
the codes it uses (``labels``), beside the codes themselves.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from fhir_service.api.deps import ContractsDep
from fhir_service.api.labels import Labels, labels_used_by
from fhir_service.api.languages import LANGUAGE_HEADERS, language_headers
from fhir_service.api.patient_page import PageDep, PatientPath, wants_html
from fhir_service.api.problems import PROBLEM_JSON
from fhir_service.contract import CoherentPlan
from fhir_service.mapping import Language

__all__ = ["PlanView", "router"]

router = APIRouter(prefix="/patients", tags=["patients"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}

# The plan is one answer in two forms (JSON, HTML) and in three languages.
_VARY = ("Accept",)
_DONE = ("agreed", "in_force", "declined", "progress", "proposal")


class PlanView(CoherentPlan):
    """The coherent plan, with the names of its codes in the reader's language."""

    language: Language = Field(description="The language of ``labels``, as Content-Language.")
    labels: Labels = Field(
        description="The name of every code this plan holds, and of no other: by code table "
        "(activity-owner, activity-category, care-team-role, contract-status, "
        "organization-kind, schedule-unit), then code."
    )


@router.get(
    "/{patient}/plan",
    response_model=PlanView,
    responses={
        200: {
            "description": "The plan, with the names of its codes in the negotiated language; "
            "as an HTML page for the patient when text/html is asked.",
            "content": {"text/html": {"schema": {"type": "string"}}},
            "headers": LANGUAGE_HEADERS,
        },
        403: {"description": "A patient's token names another patient.", **_PROBLEM},
        404: {
            "description": "The caller's care unit takes part in no plan of the patient's.",
            **_PROBLEM,
        },
        422: {"description": "Not a patient's identifier, or far too many contracts.", **_PROBLEM},
        503: {"description": "HAPI FHIR is unavailable; retry after Retry-After.", **_PROBLEM},
    },
)
async def read_plan(
    patient: PatientPath,
    request: Request,
    page: PageDep,
    contracts: ContractsDep,
    done: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> Response:
    """The patient's coherent plan: who does what, goals, care contacts and upcoming times.

    Read with one HAPI request for up to 50 contracts (the patient's drafts and contracts in
    force, with everything they hold). A browser (``Accept: text/html``) gets it as a page for
    the patient, in Swedish, Norwegian (``lang=nb``) or English (``lang=en``); a JSON client
    gets the names of the plan's codes in that language in ``labels``.
    """
    plan = await contracts.coherent_plan(patient)
    if wants_html(request):
        # What the patient just did, said once on top: one of the page's own confirmations.
        return page.html("plan.html", plan=plan, done=done if done in _DONE else None)
    language = page.language
    headers = language_headers(language, vary=_VARY)
    view = PlanView(**dict(plan), language=language, labels=labels_used_by([plan], language))
    return JSONResponse(view.model_dump(mode="json"), headers=headers)
