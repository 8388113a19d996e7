"""The page's forms read as a person filled them in: every problem at once, at its field."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fhir_service.api import page_forms
from fhir_service.contract import ActivityStatus, Contract, IdentifierKind, ProposalKind
from fhir_service.records import Decision

CONTRACT = Contract.model_validate_json(
    (
        Path(__file__).parents[3]
        / "profiles"
        / "examples"
        / "contracts"
        / "elderly-psychiatry.json"
    ).read_text("utf-8")
)
TODAY = date(2026, 12, 5)
CLINIC = ZoneInfo("Europe/Stockholm")


def test_an_answer_is_agree_or_decline_saying_why() -> None:
    assert page_forms.answer({"version": "3", "decision": "agree", "comment": "ok"}) == (
        page_forms.Answer(3, Decision.AGREE, None),
        {},
    )
    assert page_forms.answer({"version": "3", "decision": "decline", "comment": " Nej \n"}) == (
        page_forms.Answer(3, Decision.DECLINE, "Nej"),
        {},
    )
    assert page_forms.answer({"version": "3", "decision": "decline"}) == (
        None,
        {"comment": "err_comment_needed"},
    )
    assert page_forms.answer({"version": "3", "comment": "x" * 4001}) == (
        None,
        {"decision": "err_decision", "comment": "err_comment_long"},
    )


@pytest.mark.parametrize("version", [None, "", "3a", "-1", "1" * 10])
def test_an_answer_without_the_version_shown_was_not_sent_by_the_page(
    version: str | None,
) -> None:
    fields = {"decision": "agree"} | ({} if version is None else {"version": version})

    with pytest.raises(page_forms.BrokenFormError):
        page_forms.answer(fields)


def test_a_report_is_a_status_a_short_note_and_a_day_not_to_come() -> None:
    made, problems = page_forms.progress(
        {"status": "in-progress", "note": "Bra\r\n", "on": "2026-12-04"}, "c", "walk", TODAY
    )
    assert problems == {}
    assert made is not None
    assert (made.status, made.note) == (ActivityStatus.IN_PROGRESS, "Bra")
    assert made.at == datetime(2026, 12, 4, 12, tzinfo=CLINIC)
    today, _ = page_forms.progress({"status": "completed", "on": "2026-12-05"}, "c", "w", TODAY)
    assert today is not None
    assert today.at is None
    assert today.note is None

    assert page_forms.progress(
        {"status": "cancelled", "note": "x" * 501, "on": "2026-12-06"}, "c", "w", TODAY
    ) == (None, {"status": "err_status", "note": "err_note_long", "on": "err_on_future"})
    assert page_forms.progress({"status": "completed", "on": "5/12"}, "c", "w", TODAY)[1] == {
        "on": "err_on_invalid"
    }
    assert page_forms.progress({"status": "completed", "note": "a\x07"}, "c", "w", TODAY)[1] == {
        "note": "err_text_control"
    }


def test_a_proposal_names_only_what_it_may_change() -> None:
    goal = CONTRACT.goals[0].key
    activity = CONTRACT.activities[0].key

    def problems(**fields: str) -> dict[str, str]:
        return page_forms.proposal(fields, CONTRACT)[1]

    made, none = page_forms.proposal({"kind": "goal", "text": "Sova", "about": goal}, CONTRACT)
    assert none == {}
    assert made is not None
    assert (made.kind, made.about, made.contract_id) == (ProposalKind.GOAL, goal, CONTRACT.id)
    assert problems(kind="wish", text="Ringa") == {}
    assert problems(kind="goal", text="Ett nytt mål") == {}
    assert problems() == {"kind": "err_kind", "text": "err_text_missing"}
    assert problems(kind="activity", text="Byt") == {"about": "err_about_needed"}
    assert problems(kind="goal", text="x", about=activity) == {"about": "err_about_goal"}
    assert problems(kind="time", text="x", about=activity) == {"about": "err_about_unknown"}
    assert problems(kind="wish", text="x", about=goal) == {"about": "err_about_new"}
    assert problems(kind="wish", text="x", about="no-such-key") == {"about": "err_about_unknown"}


def test_a_leave_names_a_valid_number_and_a_day_to_end_on() -> None:
    made, problems = page_forms.grant(
        {
            "kind": "personnummer",
            "number": "19121212 - 1212",
            "family": "Lindqvist",
            "given": "Eva",
            "until": "2027-06-30",
            "may_report": "yes",
        },
        TODAY,
    )
    assert problems == {}
    assert made is not None
    assert made.relative.kind is IdentifierKind.PERSONNUMMER
    assert made.relative.value == "191212121212"
    assert made.name is not None
    assert made.name.given == ("Eva",)
    assert made.end == datetime(2027, 6, 30, 23, 59, 59, tzinfo=CLINIC)
    assert made.may_report

    assert page_forms.grant({"kind": "personnummer", "given": "Eva"}, TODAY) == (
        None,
        {
            "number": "err_number_missing",
            "family": "err_family_needed",
            "until": "err_until_missing",
        },
    )
    assert page_forms.grant(
        {"kind": "fodselsnummer", "number": "01010112345", "until": "2026-12-04"}, TODAY
    )[1] == {"number": "err_number_invalid", "until": "err_until_past"}
    with pytest.raises(page_forms.BrokenFormError):
        page_forms.grant({"kind": "hsa-id", "number": "x", "until": "2027-01-01"}, TODAY)


def test_every_problem_has_its_words_in_every_language() -> None:
    texts = json.loads(
        (
            Path(__file__).parents[3] / "fhir_service" / "api" / "templates" / "plan-texts.json"
        ).read_text("utf-8")
    )
    source = (Path(page_forms.__file__)).read_text("utf-8")
    named = {word.strip('"') for word in re.findall(r'"err_\w+"', source)}

    assert len(named) > 15
    for language in ("sv", "nb", "en"):
        assert named - set(texts[language]) == set(), language
