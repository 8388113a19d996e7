"""The patient page's forms, read: what a person typed or chose, as the services' requests, or
every problem with it at once, by field, named by the page's text for it (``err_...``).

A form's own fields (its version, its token) are not the person's to get wrong: a form that
lacks them was not sent by the page, and is refused as such (`BrokenFormError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from urllib.parse import parse_qsl

from fhir_service.api.plan_page import CLINIC_TIME
from fhir_service.contract import (
    REPORTED,
    ActivityStatus,
    Contract,
    Identifier,
    IdentifierKind,
    Name,
    ProposalKind,
)
from fhir_service.errors import UnprocessableError
from fhir_service.records import Decision, ProgressAsked, ProposalAsked

__all__ = [
    "PROPOSAL_KINDS",
    "RELATIVE_KINDS",
    "REPORTED_STATUSES",
    "Answer",
    "BrokenFormError",
    "Errors",
    "Fields",
    "GrantAsked",
    "answer",
    "fields_of",
    "grant",
    "progress",
    "proposal",
]

Fields = dict[str, str]
"""A form as sent: each field's value (the last, when a field came twice)."""
Errors = dict[str, str]
"""Each field in error, with the name of the page's text that says what to do."""

# As the model's Text and ShortText, counted as the person sees it.
_TEXT_MAX = 4000
_NOTE_MAX = 500
_NAME_MAX = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

REPORTED_STATUSES = tuple(
    s for s in ("not-started", "in-progress", "on-hold", "completed") if s in REPORTED
)
"""The statuses a patient reports, in the order the form offers them."""
PROPOSAL_KINDS = tuple(ProposalKind)
RELATIVE_KINDS = (IdentifierKind.PERSONNUMMER, IdentifierKind.FODSELSNUMMER)


class BrokenFormError(UnprocessableError):
    """A form the page did not send as it is: a field of its own is missing or malformed."""

    def __init__(self, field: str) -> None:
        super().__init__(f"the form's field {field} is missing or malformed", title="Invalid form")


def fields_of(body: bytes) -> Fields:
    """The fields of an ``application/x-www-form-urlencoded`` body; line breaks as ``\\n``."""
    text = body.decode("utf-8", errors="replace")
    return {k: v.replace("\r\n", "\n") for k, v in parse_qsl(text, keep_blank_values=True)}


@dataclass(frozen=True, slots=True)
class Answer:
    """The patient's answer to the version put to them."""

    version: int
    decision: Decision
    comment: str | None


def answer(fields: Fields) -> tuple[Answer | None, Errors]:
    """Agree, or decline saying why, to the version the form showed."""
    version = _version(fields)
    errors: Errors = {}
    decision = fields.get("decision")
    if decision not in tuple(Decision):
        errors["decision"] = "err_decision"
    comment = _text(fields, "comment", _TEXT_MAX, "err_comment_long", errors)
    if decision == Decision.DECLINE and comment is None and "comment" not in errors:
        errors["comment"] = "err_comment_needed"
    if errors or decision is None:
        return None, errors
    chosen = Decision(decision)
    return Answer(version, chosen, comment if chosen is Decision.DECLINE else None), errors


def progress(
    fields: Fields, contract_id: str, key: str, today: date
) -> tuple[ProgressAsked | None, Errors]:
    """How an activity goes, and when (an empty date: now)."""
    errors: Errors = {}
    status = fields.get("status")
    if status not in REPORTED_STATUSES:
        errors["status"] = "err_status"
    note = _text(fields, "note", _NOTE_MAX, "err_note_long", errors)
    on = _date(fields, "on", "err_on_invalid", errors)
    if on is not None and on > today:
        errors["on"] = "err_on_future"
    if errors or status is None:
        return None, errors
    # A day before today is told as its noon at the clinic; today is now.
    at = None if on is None or on == today else datetime.combine(on, time(12), CLINIC_TIME)
    return ProgressAsked(contract_id, key, ActivityStatus(status), note, at), errors


def proposal(fields: Fields, contract: Contract) -> tuple[ProposalAsked | None, Errors]:
    """A proposal in the patient's own words, about something of ``contract`` or new."""
    errors: Errors = {}
    kind = fields.get("kind")
    if kind not in PROPOSAL_KINDS:
        errors["kind"] = "err_kind"
    text = _text(fields, "text", _TEXT_MAX, "err_text_long", errors)
    if text is None and "text" not in errors:
        errors["text"] = "err_text_missing"
    about = fields.get("about") or None
    keys = {
        ProposalKind.GOAL: {g.key for g in contract.goals},
        ProposalKind.ACTIVITY: {a.key for a in contract.activities},
        ProposalKind.TIME: {t.key for t in contract.agreed_times},
    }
    if about is not None and not any(about in k for k in keys.values()):
        errors["about"] = "err_about_unknown"
    elif kind in keys and about is None and kind != ProposalKind.GOAL:
        errors["about"] = "err_about_needed"
    elif kind in keys and about is not None and about not in keys[ProposalKind(kind)]:
        errors["about"] = "err_about_goal" if kind == ProposalKind.GOAL else "err_about_unknown"
    elif kind in (ProposalKind.RESOURCE, ProposalKind.WISH) and about is not None:
        errors["about"] = "err_about_new"
    if errors or kind is None or text is None:
        return None, errors
    return ProposalAsked(contract.id, ProposalKind(kind), text, about), errors


@dataclass(frozen=True, slots=True)
class GrantAsked:
    """A leave for a relative, as the patient asked it: until the end of ``until``."""

    relative: Identifier
    name: Name | None
    end: datetime
    may_report: bool


def grant(fields: Fields, today: date) -> tuple[GrantAsked | None, Errors]:
    """Whom to let read the plan, until which day, and whether they may also report."""
    errors: Errors = {}
    kind = fields.get("kind")
    if kind not in RELATIVE_KINDS:
        raise BrokenFormError("kind")
    number = re.sub(r"\s", "", fields.get("number", ""))
    relative = None
    if not number:
        errors["number"] = "err_number_missing"
    else:
        try:
            relative = Identifier(kind=IdentifierKind(kind), value=number)
        except ValueError:
            errors["number"] = "err_number_invalid"
    given = _text(fields, "given", _NAME_MAX, "err_name_long", errors)
    family = _text(fields, "family", _NAME_MAX, "err_name_long", errors)
    if given is not None and family is None and "family" not in errors:
        errors["family"] = "err_family_needed"
    until = _date(fields, "until", "err_until_invalid", errors)
    if until is None and "until" not in errors:
        errors["until"] = "err_until_missing"
    elif until is not None and until < today:
        errors["until"] = "err_until_past"
    if errors or relative is None or until is None:
        return None, errors
    name = None if family is None else Name(family=family, given=() if given is None else (given,))
    # The whole of the last day, as the clinic's clock has it.
    end = datetime.combine(until, time(23, 59, 59), CLINIC_TIME)
    return GrantAsked(relative, name, end, fields.get("may_report") == "yes"), errors


def _version(fields: Fields) -> int:
    version = fields.get("version", "")
    if not version.isdigit() or len(version) > 9:
        raise BrokenFormError("version")
    return int(version)


def _text(fields: Fields, field: str, most: int, too_long: str, errors: Errors) -> str | None:
    value = fields.get(field, "").strip()
    if len(value) > most:
        errors[field] = too_long
    elif _CONTROL.search(value):
        errors[field] = "err_text_control"
    return value or None


def _date(fields: Fields, field: str, invalid: str, errors: Errors) -> date | None:
    value = fields.get(field, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[field] = invalid
        return None
