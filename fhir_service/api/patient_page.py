"""The patient's own acts on their page, as plain HTML forms: answering a version put to them,
saying how one of their activities goes, proposing a change, giving a relative leave and taking
it back. No JavaScript: each form posts, and is answered with a redirect to the page that shows
what changed (a confirmation in the page's words) or with the form again, every problem at its
field.

Each act is the same call, with the same walls and audit record, as the JSON facade's route
for it; only the patient acts here. Every form carries a token of this service's
(`fhir_service.api.form_tokens`): a form posted from anywhere else is refused. Refusals of the
services become a page in the reader's language (`refused_page`), through the facade's one
handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from fhir_service import errors
from fhir_service.api import page_forms
from fhir_service.api.deps import AccessDep, ConsentsDep, ContractsDep
from fhir_service.api.form_tokens import FormTokens
from fhir_service.api.languages import (
    AcceptLanguage,
    LanguageQuery,
    language_headers,
    negotiated_language,
)
from fhir_service.api.plan_page import CLINIC_TIME, PAGE_HEADERS, page_texts, render_page
from fhir_service.contract import (
    PLAN_STATUSES,
    ActivityOwner,
    Contract,
    ContractStatus,
    Identifier,
    IllegalTransitionError,
    NotInForceError,
    NotPutToPatientError,
    TooManyOpenError,
    awaits_patient,
)
from fhir_service.mapping import Language
from fhir_service.records import Decision, Grant
from fhir_service.security import AccessDeniedError, Denial, identifier_named

__all__ = [
    "PAGE_STATE",
    "Page",
    "PageDep",
    "PatientPath",
    "refused_page",
    "router",
    "wants_html",
]

PAGE_STATE = "page"
"""Where a page request keeps its `Page`, so that a refusal is answered as a page too."""

PatientPath = Annotated[
    str,
    Path(
        pattern=r"^[a-z\-]+\|[0-9A-Za-z\-]{1,40}$",
        description="The patient as kind|value, e.g. personnummer|19121212-1212.",
        examples=["personnummer|19121212-1212"],
    ),
]
ContractPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
KeyPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-]{1,64}$")]
ConsentPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]


@dataclass(frozen=True)
class Page:
    """One request for a page of the patient's: in which language, whose, whether the reader
    is that patient (who acts; a care unit reads), and the relative reading it, when their
    leave lets them say how their own activities go (``reports_for``)."""

    language: Language
    patient: Identifier | None
    base: str
    path: str
    acts: bool
    reports_for: Identifier | None
    form_token: str
    booking_link: str | None

    def html(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        """``template`` as this page's answer."""
        body = render_page(
            template,
            self.language,
            path=self.path,
            base=self.base,
            booking_link=self.booking_link,
            acts=self.acts,
            reports_for=self.reports_for,
            form_token=self.form_token,
            **context,
        )
        headers = {**PAGE_HEADERS, **language_headers(self.language, vary=("Accept",))}
        return HTMLResponse(body, status_code=status, headers=headers)

    def form_again(self, template: str, problems: page_forms.Errors, **context: Any) -> Response:
        """``template`` with the person's form again, each problem said at its field."""
        texts = page_texts(self.language)
        said = {field: str(texts[key]) for field, key in problems.items()}
        return self.html(template, status=422, errors=said, **context)

    def after(self, done: str, *parts: str) -> RedirectResponse:
        """See Other: the page below the plan that ``parts`` name, confirming ``done``."""
        below = "".join(f"/{quote(part, safe='')}" for part in parts)
        query = urlencode({"lang": self.language, "done": done})
        return RedirectResponse(f"{self.base}{below}?{query}", status_code=303)

    @property
    def today(self) -> date:
        """Today, as the clinic's clock has it."""
        return datetime.now(CLINIC_TIME).date()


def wants_html(request: Request) -> bool:
    """Whether the request is a browser's: a form it posts, or a page it asks for first."""
    if request.method == "POST":
        return True
    first = request.headers.get("accept", "").split(",")[0].split(";")[0].strip().lower()
    return first in ("text/html", "application/xhtml+xml")


async def _page(
    request: Request,
    patient: PatientPath,
    access: AccessDep,
    lang: LanguageQuery = None,
    accept_language: AcceptLanguage = None,
) -> Page:
    identifier = identifier_named(patient, patient=True)
    language = negotiated_language(lang, accept_language)
    leave = access.leave
    tokens: FormTokens = request.app.state.form_tokens
    page = Page(
        language=language,
        patient=identifier,
        base=f"/patients/{quote(patient, safe='|')}/plan",
        path=request.url.path,
        acts=identifier is not None
        and access.compartment.patient == identifier
        and access.leave is None,
        reports_for=leave.relative if leave is not None and leave.may_report else None,
        form_token=tokens.make(access.principal.subject),
        booking_link=request.app.state.settings.booking_link,
    )
    if wants_html(request):
        setattr(request.state, PAGE_STATE, page)
    if identifier is None:
        raise errors.UnprocessableError(
            "expected a patient's identifier as kind|value", title="Invalid patient"
        )
    walls = access.compartment.patient
    if walls is not None and walls != identifier:
        raise AccessDeniedError(Denial.OUTSIDE_COMPARTMENT)
    return page


PageDep = Annotated[Page, Depends(_page)]


async def _fields(request: Request, access: AccessDep, acts: bool) -> page_forms.Fields:
    """The posted form's fields, once it is known to come from this person's own page, and
    from a person who ``acts`` here."""
    tokens: FormTokens = request.app.state.form_tokens
    fields = page_forms.fields_of(await request.body())
    from_elsewhere = request.headers.get("sec-fetch-site") == "cross-site"
    mine = tokens.holds(fields.get("form_token", ""), access.principal.subject)
    if from_elsewhere or not mine or not acts:
        raise AccessDeniedError(
            Denial.ONLY_THE_PATIENT_ACTS if mine and not from_elsewhere else Denial.NOT_FROM_PAGE
        )
    return fields


async def _form(request: Request, page: PageDep, access: AccessDep) -> page_forms.Fields:
    return await _fields(request, access, page.acts)


async def _report(request: Request, page: PageDep, access: AccessDep) -> page_forms.Fields:
    # How an activity goes is the relative's to say too, of their own, when the leave allows.
    return await _fields(request, access, page.acts or page.reports_for is not None)


FormDep = Annotated[page_forms.Fields, Depends(_form)]
ReportDep = Annotated[page_forms.Fields, Depends(_report)]

router = APIRouter(prefix="/patients/{patient}/plan", include_in_schema=False)


# The version put to the patient ---------------------------------------------------------


@router.get("/contracts/{contract_id}", name="page_contract")
async def contract_page(
    contract_id: ContractPath, page: PageDep, contracts: ContractsDep
) -> Response:
    """A version of a contract, with the patient's answer when it awaits it."""
    shown = await contracts.read(contract_id)
    return page.html("contract.html", **_terms(page, shown.contract, shown.withheld))


@router.post("/contracts/{contract_id}", name="page_answer")
async def answer(
    contract_id: ContractPath, page: PageDep, form: FormDep, contracts: ContractsDep
) -> Response:
    """Agree to the version shown, or decline it saying why."""
    asked, problems = page_forms.answer(form)
    if asked is None:
        shown = await contracts.read(contract_id)
        context = _terms(page, shown.contract, shown.withheld)
        return page.form_again("contract.html", problems, values=form, **context)
    written = await contracts.sign(
        contract_id, asked.decision, asked.comment, f'W/"{asked.version}"'
    )
    if asked.decision is Decision.DECLINE:
        return page.after("declined")
    # The second signature of the version makes it the agreement: say which this was.
    in_force = written.contract.status is ContractStatus.AGREED
    return page.after("in_force" if in_force else "agreed")


def _terms(page: Page, contract: Contract, withheld: bool) -> dict[str, Any]:
    _theirs(page, contract)
    return {"contract": contract, "withheld": withheld, "awaiting": awaits_patient(contract)}


# How an activity goes ---------------------------------------------------------------------


@router.get("/contracts/{contract_id}/activities/{key}/progress", name="page_progress_form")
async def progress_page(
    contract_id: ContractPath, key: KeyPath, page: PageDep, contracts: ContractsDep
) -> Response:
    """The form to say how one of the patient's activities goes."""
    shown = await contracts.read(contract_id)
    return page.html("progress.html", **_activity(page, shown.contract, key))


@router.post("/contracts/{contract_id}/activities/{key}/progress", name="page_progress")
async def report_progress(
    contract_id: ContractPath,
    key: KeyPath,
    page: PageDep,
    form: ReportDep,
    contracts: ContractsDep,
) -> Response:
    """Say how the activity goes; the care sees it at once."""
    asked, problems = page_forms.progress(form, contract_id, key, page.today)
    if asked is None:
        shown = await contracts.read(contract_id)
        context = _activity(page, shown.contract, key)
        return page.form_again("progress.html", problems, values=form, **context)
    await contracts.report_progress(asked, None)
    return page.after("progress")


def _activity(page: Page, contract: Contract, key: str) -> dict[str, Any]:
    _theirs(page, contract)
    activity = next((a for a in contract.activities if a.key == key), None)
    if activity is None:
        raise errors.RecordNotFoundError(f"the contract has no activity {key}")
    if contract.status not in PLAN_STATUSES:
        raise NotInForceError(contract.status)
    named = next((r for r in contract.relatives if r.key == activity.relative), None)
    relative = None if named is None else named.identifier
    theirs = (page.acts and activity.owner is ActivityOwner.PATIENT) or (
        activity.owner is ActivityOwner.RELATIVE
        and page.reports_for is not None
        and relative == page.reports_for
    )
    return {
        "contract": contract,
        "activity": activity,
        "statuses": page_forms.REPORTED_STATUSES,
        "theirs": theirs,
    }


# Proposals ----------------------------------------------------------------------------------


@router.get("/contracts/{contract_id}/proposals", name="page_proposal_form")
async def proposal_page(
    contract_id: ContractPath, page: PageDep, contracts: ContractsDep
) -> Response:
    """The form to propose a change, or something new, in the patient's own words."""
    shown = await contracts.read(contract_id)
    return page.html("proposal.html", **_proposing(page, shown.contract))


@router.post("/contracts/{contract_id}/proposals", name="page_proposal")
async def add_proposal(
    contract_id: ContractPath, page: PageDep, form: FormDep, contracts: ContractsDep
) -> Response:
    """Send the proposal to the care unit."""
    shown = await contracts.read(contract_id)
    asked, problems = page_forms.proposal(form, shown.contract)
    if asked is None:
        context = _proposing(page, shown.contract)
        return page.form_again("proposal.html", problems, values=form, **context)
    await contracts.add_proposal(asked, None)
    return page.after("proposal")


def _proposing(page: Page, contract: Contract) -> dict[str, Any]:
    _theirs(page, contract)
    texts = page_texts(page.language)
    about = [
        (texts["about_goals"], [(g.key, g.description) for g in contract.goals]),
        (texts["about_activities"], [(a.key, a.description) for a in contract.activities]),
        (texts["about_times"], [(t.key, t.description) for t in contract.agreed_times]),
    ]
    return {"contract": contract, "kinds": page_forms.PROPOSAL_KINDS, "about": about}


def _theirs(page: Page, contract: Contract) -> None:
    # The address names the patient: another patient's contract is not found under it.
    if contract.patient.identifier != page.patient:
        raise errors.RecordNotFoundError(f"the patient has no contract {contract.id}")


# Relatives ----------------------------------------------------------------------------------


@router.get("/relatives", name="page_relatives")
async def relatives_page(page: PageDep, consents: ConsentsDep, done: str | None = None) -> Response:
    """Who may see the plan, and the form to give a relative leave."""
    return page.html("relatives.html", **_leaves(await consents.all(), done))


@router.post("/relatives", name="page_grant")
async def grant(page: PageDep, form: FormDep, consents: ConsentsDep) -> Response:
    """Let a relative read the plan until the day chosen."""
    asked, problems = page_forms.grant(form, page.today)
    if asked is None:
        context = _leaves(await consents.all(), None)
        return page.form_again("relatives.html", problems, values=form, **context)
    await consents.grant(asked.relative, asked.name, (None, asked.end), asked.may_report)
    return page.after("granted", "relatives")


@router.get("/relatives/{consent_id}/revoke", name="page_revoke_form")
async def revoke_page(consent_id: ConsentPath, page: PageDep, consents: ConsentsDep) -> Response:
    """Asks before a leave is taken back."""
    leave = next((g for g in await consents.all() if g.id == consent_id and g.active), None)
    if leave is None:
        raise errors.RecordNotFoundError(f"no leave {consent_id} in force")
    return page.html("revoke.html", leave=leave)


@router.post("/relatives/{consent_id}/revoke", name="page_revoke")
async def revoke(
    consent_id: ConsentPath, page: PageDep, form: FormDep, consents: ConsentsDep
) -> Response:
    """Take the leave back now."""
    await consents.revoke(consent_id)
    return page.after("revoked", "relatives")


def _leaves(leaves: list[Grant], done: str | None) -> dict[str, Any]:
    return {
        "leaves": leaves,
        "identifier_kinds": page_forms.RELATIVE_KINDS,
        "done": done if done in ("granted", "revoked") else None,
    }


# Refusals, as a page -------------------------------------------------------------------------


def refused_page(request: Request, exc: errors.ServiceError, status: int) -> Response | None:
    """``exc`` as a page a person can act on, when the request was for one; else None."""
    page = getattr(request.state, PAGE_STATE, None)
    if not isinstance(page, Page):
        return None
    said, again = _said(exc, status)
    # The same page afresh: the form as it is now, or the page that was asked for.
    fresh = f"{request.url.path}?{urlencode({'lang': page.language})}"
    texts = page_texts(page.language)
    return page.html(
        "error.html", status=status, message=texts[said], again=fresh if again else None
    )


def _said(exc: errors.ServiceError, status: int) -> tuple[str, bool]:
    """The text that tells a person what happened, and whether opening the page again helps."""
    if isinstance(exc, AccessDeniedError) and exc.denial is Denial.NOT_FROM_PAGE:
        return "msg_form_expired", True
    kinds: tuple[tuple[type[errors.ServiceError], str, bool], ...] = (
        (NotPutToPatientError, "msg_not_awaiting", False),
        (IllegalTransitionError, "msg_not_awaiting", False),
        (NotInForceError, "msg_not_in_force", False),
        (TooManyOpenError, "msg_too_many", False),
        (errors.PreconditionFailedError, "msg_changed", True),
        (errors.RecordConflictError, "msg_changed", True),
        (errors.ForbiddenError, "msg_forbidden", False),
        (errors.RecordNotFoundError, "msg_not_found", False),
        (errors.OutcomeUnknownError, "msg_unknown", False),
        (errors.UnavailableError, "msg_unavailable", True),
        (errors.InvalidRequestError, "msg_invalid", True),
        (errors.UnprocessableError, "msg_invalid", True),
    )
    for kind, said, again in kinds:
        if isinstance(exc, kind):
            return said, again
    return ("msg_failed", False) if status >= 500 else ("msg_invalid", True)
