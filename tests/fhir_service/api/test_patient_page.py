"""The patient acts on their own page in a real headless Chromium, by keyboard alone, against
the service process and HAPI: answers the version put to them, says how an activity goes,
proposes a change, gives a relative leave and takes it back. Then the forms as no browser of
the patient's would send them: from elsewhere, by someone else, stale, or malformed.

Every page and every state on the way (the form, the form with its errors, the confirmation, the
refusal) is checked by axe-core, with no violation allowed, and kept as a screenshot. What each
act did is then read back through the JSON facade as the care unit (or the relative) sees it.
The page runs no script of its own; axe is evaluated by the browser's debugger.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Locator, Page

from tests.auth import ISSUER, TestIssuer
from tests.browser import axe_violations
from tests.fhir_service.api.parties import Story
from tests.support import unique_fodselsnummer, unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
CLINIC = ZoneInfo("Europe/Stockholm")
PAGES = Path(__file__).parents[3] / "fhir_service" / "api" / "templates"
PAGE_TEXTS = PAGES / "plan-texts.json"
TEMPLATES = sorted(PAGES.glob("*.html"))


class Visit:
    """One patient's browser on their page, and each state it was checked in."""

    def __init__(self, page: Page, screenshots: Path, prefix: str) -> None:
        self.page = page
        self.screenshots = screenshots
        self.prefix = prefix
        self.checked: list[str] = []

    def check(self, state: str) -> None:
        """No axe-core violation in this state, and its screenshot kept."""
        shot = self.screenshots / f"{self.prefix}-{len(self.checked):02d}-{state}.png"
        self.page.screenshot(path=shot, full_page=True)
        assert shot.stat().st_size > 5_000
        assert axe_violations(self.page) == [], state
        # The page works without any script: there is none.
        assert self.page.locator("script").count() == 0, state
        self.checked.append(state)

    def tab_to(self, target: Locator, most: int = 80) -> None:
        """Press Tab until ``target`` has the focus, as a keyboard user reaches it."""
        for _ in range(most):
            self.page.keyboard.press("Tab")
            if target.evaluate("element => element === document.activeElement"):
                return
        raise AssertionError(f"{target} was not reached by Tab")

    def activate(self, target: Locator) -> None:
        """Tab to a link or button and press Enter, waiting for the page it leads to."""
        self.tab_to(target)
        with self.page.expect_navigation():
            self.page.keyboard.press("Enter")

    def type_into(self, target: Locator, text: str) -> None:
        self.tab_to(target)
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(text)

    def type_date(self, target: Locator, day: datetime) -> None:
        """Type a day into a date field, digit by digit, in the order headless Chromium lays
        its fields out (month, day, year, whatever the locale)."""
        self.tab_to(target)
        self.page.keyboard.type(day.strftime("%m%d%Y"))
        assert target.input_value() == day.strftime("%Y-%m-%d")


def _contract(
    service: str, issuer: TestIssuer, scenario: str, number: str, relative: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The scenario as a new patient's draft, put to the patient by the unit's EHR."""
    data: dict[str, Any] = json.loads((EXAMPLES / f"{scenario}.json").read_text("utf-8"))
    data["id"] = f"page-act-{uuid.uuid4().hex[:12]}"
    data["patient"]["identifier"]["value"] = number
    # A draft, whatever the scenario's state: the patient is to agree in their own name.
    data["status"] = "draft"
    data.pop("agreements", None)
    if data.get("relatives"):
        # The relative taking part is named by their own number, as a leave names them.
        kind = data["patient"]["identifier"]["kind"]
        data["relatives"][0]["identifier"] = {"kind": kind, "value": relative}
    unit = data["responsible_clinician"]["organization"]["identifier"]
    ehr = issuer.headers("ehr", organization=f"{unit['kind']}|{unit['value']}")
    created = httpx.post(f"{service}/contracts", json=data, headers=ehr, timeout=60)
    assert created.status_code == 201, created.text
    proposed = httpx.post(
        f"{service}/contracts/{data['id']}/propose",
        headers={**ehr, "If-Match": f'W/"{created.json()["version"]}"'},
        timeout=60,
    )
    assert proposed.status_code == 200, proposed.text
    return proposed.json(), ehr


def _visit(
    browser: Browser, service: str, issuer: TestIssuer, patient: str, screenshots: Path, **kw: Any
) -> tuple[Visit, str]:
    subject = f"patient-{uuid.uuid4().hex[:8]}"
    token = issuer.token("patient", patient=patient, subject=subject)
    page = browser.new_page(extra_http_headers={"Authorization": f"Bearer {token}"}, **kw)
    return Visit(page, screenshots, kw.get("locale", "sv-SE")[:2]), subject


def _named(action: str, what: str) -> re.Pattern[str]:
    """A link's accessible name: its action, then (hidden but read out) what it acts on."""
    return re.compile(rf"^{re.escape(action)}\s*:\s*{re.escape(what)}$")


def _read(service: str, headers: dict[str, str], contract_id: str) -> dict[str, Any]:
    read = httpx.get(f"{service}/contracts/{contract_id}", headers=headers, timeout=60)
    assert read.status_code == 200, read.text
    return dict(read.json())


def test_the_patient_agrees_reports_proposes_and_gives_leave_by_keyboard_in_swedish(
    page_service: str, browser: Browser, issuer: TestIssuer, screenshots: Path
) -> None:
    number, relative = unique_personnummer(), unique_personnummer()
    patient = f"personnummer|{number}"
    contract, ehr = _contract(page_service, issuer, "elderly-psychiatry", number, relative)
    visit, _ = _visit(browser, page_service, issuer, patient, screenshots, locale="sv-SE")
    page = visit.page
    page.goto(f"{page_service}/patients/{patient}/plan")
    visit.check("plan-awaiting")
    assert contract["title"] in page.locator("#awaiting ~ ul").first.inner_text()

    # 1. Answer the version put to the patient: first without choosing, then agreeing.
    visit.activate(page.get_by_role("link", name=re.compile(r"^Läs och svara")))
    assert page.locator("h1").inner_text() == contract["title"]
    visit.check("contract")
    visit.activate(page.get_by_role("button", name="Skicka mitt svar"))
    assert page.title().startswith("Fel:")
    assert "Välj om du godkänner" in page.locator(".error-summary").inner_text()
    visit.check("contract-errors")
    visit.tab_to(page.locator("#decision"))
    page.keyboard.press("Space")
    visit.activate(page.get_by_role("button", name="Skicka mitt svar"))
    assert "Ditt godkännande är sparat" in page.locator(".done").inner_text()
    visit.check("plan-agreed-by-patient")
    signed = _read(page_service, ehr, contract["id"])
    assert [s["party"] for s in signed["signatures"]] == ["patient"]
    assert signed["status"] == "draft"

    # The clinician signs with their own token: the contract is in force.
    unit = contract["responsible_clinician"]["organization"]["identifier"]
    clinician = issuer.headers("clinician", organization=f"{unit['kind']}|{unit['value']}")
    agreed = httpx.post(
        f"{page_service}/contracts/{contract['id']}/sign",
        json={"decision": "agree"},
        headers={**clinician, "If-Match": f'W/"{signed["version"]}"'},
        timeout=60,
    )
    assert agreed.json()["status"] == "agreed", agreed.text

    # 2. Say how one of the patient's own activities goes.
    own = next(a for a in contract["activities"] if a["owner"] == "patient")
    page.goto(f"{page_service}/patients/{patient}/plan")
    visit.check("plan-in-force")
    visit.activate(page.get_by_role("link", name=_named("Berätta hur det går", own["description"])))
    visit.check("progress")
    visit.type_date(page.locator("#on"), datetime(2099, 12, 31))
    visit.activate(page.get_by_role("button", name="Spara"))
    summary = page.locator(".error-summary").inner_text()
    # Every problem at once: no status chosen, and a day still to come.
    assert "Välj hur det går" in summary
    assert "Datumet kan inte vara i framtiden" in summary
    assert page.locator("#on").input_value() == "2099-12-31"
    visit.check("progress-errors")
    visit.tab_to(page.locator("#status"))
    page.keyboard.press("ArrowDown")  # from "Inte påbörjad" to "Pågår"
    visit.type_into(page.locator("#note"), "Går på promenad varje dag")
    yesterday = datetime.now(CLINIC) - timedelta(days=1)
    visit.type_date(page.locator("#on"), yesterday)
    visit.activate(page.get_by_role("button", name="Spara"))
    assert "Det du berättade om aktiviteten är sparat" in page.locator(".done").inner_text()
    visit.check("plan-progress")
    reported = next(
        a for a in _read(page_service, ehr, contract["id"])["activities"] if a["key"] == own["key"]
    )
    assert reported["status"] == "in-progress"
    assert reported["progress"]["note"] == "Går på promenad varje dag"
    assert reported["progress"]["by"] == "patient"
    # A day before today is told as that day's noon at the clinic.
    told = datetime.fromisoformat(reported["progress"]["reported_at"]).astimezone(CLINIC)
    assert (told.date(), told.hour) == (yesterday.date(), 12)

    # 3. Propose something in the patient's own words.
    visit.activate(
        page.get_by_role(
            "link", name=_named("Föreslå en ändring eller ett önskemål", contract["title"])
        )
    )
    visit.check("proposal")
    visit.activate(page.get_by_role("button", name="Skicka förslaget"))
    assert page.locator(".error-summary li").count() == 2
    visit.check("proposal-errors")
    visit.tab_to(page.locator("#kind"))
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # goal, resource, wish
    visit.type_into(page.locator("#text"), "Jag vill gärna träffa samma sjuksköterska varje gång")
    visit.activate(page.get_by_role("button", name="Skicka förslaget"))
    assert "Ditt förslag är skickat" in page.locator(".done").inner_text()
    assert "Väntar på svar från vården" in page.locator("#proposals ~ ul").first.inner_text()
    visit.check("plan-proposal")
    proposals = _read(page_service, ehr, contract["id"])["proposals"]
    assert [(p["kind"], p["status"]) for p in proposals] == [("wish", "open")]

    # 4. Give a relative leave, after a mistake in their number, then take it back.
    visit.activate(page.get_by_role("link", name="Ge eller ta tillbaka en närståendes tillgång"))
    visit.check("relatives")
    visit.type_into(page.locator("#number"), relative[:-1] + str((int(relative[-1]) + 1) % 10))
    visit.activate(page.get_by_role("button", name="Ge tillgång"))
    summary = page.locator(".error-summary").inner_text()
    assert "Numret stämmer inte" in summary
    assert "Skriv till och med vilken dag" in summary
    assert page.locator("#number").get_attribute("aria-invalid") == "true"
    visit.check("relatives-errors")
    visit.type_into(page.locator("#number"), relative)
    visit.type_into(page.locator("#family"), "Lindqvist")
    visit.type_date(page.locator("#until"), datetime(2030, 6, 30))
    visit.tab_to(page.locator("#may_report"))
    page.keyboard.press("Space")
    visit.activate(page.get_by_role("button", name="Ge tillgång"))
    assert "Din närstående kan nu se din plan" in page.locator(".done").inner_text()
    visit.check("relatives-granted")
    leaves = httpx.get(
        f"{page_service}/consents",
        headers={"Authorization": f"Bearer {issuer.token('patient', patient=patient)}"},
        timeout=60,
    ).json()
    assert [(g["relative"]["value"], g["may_report"], g["active"]) for g in leaves] == [
        (relative, True, True)
    ]
    assert leaves[0]["end"].startswith("2030-06-30")
    as_relative = issuer.headers("relative", patient=patient, fhirUser=leaves[0]["fhir_user"])
    plan_url = f"{page_service}/patients/{patient}/plan"
    assert httpx.get(plan_url, headers=as_relative, timeout=60).status_code == 200

    visit.activate(page.get_by_role("link", name=_named("Ta tillbaka", relative)))
    visit.check("revoke-confirm")
    visit.activate(page.get_by_role("button", name="Ja, ta tillbaka"))
    assert "kan inte längre se din plan" in page.locator(".done").inner_text()
    visit.check("relatives-revoked")
    assert httpx.get(plan_url, headers=as_relative, timeout=60).status_code == 403

    # 5. A form that did not come from the page as sent (its token altered) is refused, and
    # the person is told what to do; nothing is written.
    before = _read(page_service, ehr, contract["id"])["version"]
    page.goto(f"{page_service}/patients/{patient}/plan/contracts/{contract['id']}/proposals")
    page.locator("input[name=form_token]").evaluate("input => { input.value = 'forged'; }")
    visit.tab_to(page.locator("#kind"))
    visit.type_into(page.locator("#text"), "Ett förslag")
    visit.activate(page.get_by_role("button", name="Skicka förslaget"))
    assert "Formuläret har gått ut" in page.locator("[role=alert]").inner_text()
    visit.check("refused-form")
    assert _read(page_service, ehr, contract["id"])["version"] == before

    assert len(visit.checked) == 17


def test_the_patient_declines_with_a_comment_in_norwegian_and_the_unit_reads_it(
    page_service: str, browser: Browser, issuer: TestIssuer, screenshots: Path
) -> None:
    number, relative = unique_fodselsnummer(), unique_fodselsnummer()
    patient = f"fodselsnummer|{number}"
    contract, ehr = _contract(page_service, issuer, "norwegian-individual-plan", number, relative)
    visit, _ = _visit(browser, page_service, issuer, patient, screenshots, locale="nb-NO")
    page = visit.page
    page.goto(f"{page_service}/patients/{patient}/plan")
    assert page.locator("html").get_attribute("lang") == "nb"
    visit.check("plan-awaiting")

    visit.activate(page.get_by_role("link", name=re.compile(r"^Les og svar")))
    visit.check("contract")
    visit.tab_to(page.locator("#decision"))
    page.keyboard.press("ArrowDown")  # "Nei, jeg godkjenner den ikke"
    visit.activate(page.get_by_role("button", name="Send svaret mitt"))
    # Declining asks why, so that the care can change the plan.
    assert "Skriv hvorfor" in page.locator(".error-summary").inner_text()
    assert page.locator("#decision-decline").is_checked()
    visit.check("contract-errors")
    visit.type_into(page.locator("#comment"), "Jeg ønsker fysioterapi hjemme, ikke på senteret.")
    visit.activate(page.get_by_role("button", name="Send svaret mitt"))
    assert "Svaret ditt er lagret" in page.locator(".done").inner_text()
    visit.check("plan-declined")

    review = _read(page_service, ehr, contract["id"])["patient_review"]
    assert review["comment"] == "Jeg ønsker fysioterapi hjemme, ikke på senteret."
    assert review["declined_at"]
    # Declined, the version no longer waits for the patient: no form is offered.
    page.goto(f"{page_service}/patients/{patient}/plan/contracts/{contract['id']}")
    assert page.locator("form").count() == 0
    visit.check("contract-answered")
    assert len(visit.checked) == 5


@pytest.mark.parametrize(
    "where", ["", "/contracts/{id}", "/relatives", "/contracts/{id}/proposals"]
)
def test_every_page_reads_in_english_without_an_axe_violation(
    page_service: str, browser: Browser, issuer: TestIssuer, screenshots: Path, where: str
) -> None:
    number = unique_personnummer()
    patient = f"personnummer|{number}"
    contract, _ = _contract(page_service, issuer, "knee-replacement", number, unique_personnummer())
    visit, _ = _visit(browser, page_service, issuer, patient, screenshots, locale="en-GB")
    path = where.replace("{id}", contract["id"])
    visit.page.goto(f"{page_service}/patients/{patient}/plan{path}")

    assert visit.page.locator("html").get_attribute("lang") == "en"
    assert visit.page.get_by_role("link", name="Back to my plan").count() == (1 if path else 0)
    visit.check(f"english{path.replace('/', '-')}")


# The forms as a hostile or careless sender would post them, in the app, against HAPI ---------

HTML = {"Accept": "text/html"}
SENT_AS_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _form_token(client: TestClient, url: str, headers: dict[str, str]) -> str:
    shown = client.get(url, headers={**headers, **HTML})
    assert shown.status_code == 200, shown.text
    found = re.search(r'name="form_token" value="([0-9a-f]{64})"', shown.text)
    assert found is not None, "the page has no form"
    return found.group(1)


def _post(
    client: TestClient, url: str, headers: dict[str, str], fields: dict[str, str], **more: str
) -> httpx.Response:
    # As a browser is answered: a redirect is looked at, not followed blindly.
    return client.post(
        url,
        content=urlencode(fields),
        headers={**headers, **HTML, **SENT_AS_FORM, **more},
        follow_redirects=False,
    )


def _refusals(hapi: str, subject: str, at_least: int) -> int:
    """How many refusals of ``subject``'s are on record in HAPI, once there are ``at_least``
    (or a minute has gone by)."""
    deadline = time.monotonic() + 60
    while True:
        events = httpx.get(
            f"{hapi}/AuditEvent",
            params={"agent-identifier": f"{ISSUER}|{subject}", "outcome": "4"},
        ).json()
        found = len(events.get("entry", []))
        if found >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_form_not_sent_from_the_persons_own_page_is_refused_and_on_record(
    story: Story, issuer: TestIssuer, conformance_loaded: str
) -> None:
    url = f"/patients/{story.patient_claim}/plan/contracts/{story.id}/activities/walk/progress"
    token = _form_token(story.client, url, story.patient)
    # The same patient signed in elsewhere (another subject) has a form token of its own.
    other_subject = issuer.headers("patient", patient=story.patient_claim, subject="elsewhere")
    others = _form_token(story.client, url, other_subject)
    before = story.read()
    report = {"status": "completed", "note": "Klart"}

    refused = [
        _post(story.client, url, story.patient, report),
        _post(story.client, url, story.patient, {**report, "form_token": others}),
        _post(story.client, url, story.patient, {**report, "form_token": "0" * 64}),
        _post(
            story.client,
            url,
            story.patient,
            {**report, "form_token": token},
            **{"Sec-Fetch-Site": "cross-site"},
        ),
    ]

    for answer in refused:
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("text/html")
        assert "Formuläret har gått ut eller kom inte från din plan" in answer.text
        # It says what to do: open the form again, in the reader's language.
        assert f'href="{url}?lang=sv"' in answer.text.replace("%7C", "|")
    assert story.read() == before
    assert _refusals(conformance_loaded, story.patient_subject, 4) >= 4

    sent = _post(story.client, url, story.patient, {**report, "form_token": token})
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"].endswith("/plan?lang=sv&done=progress")
    assert next(a for a in story.read()["activities"] if a["key"] == "walk")["status"] == (
        "completed"
    )


def _relative_with_leave(story: Story, issuer: TestIssuer, *, may_report: bool) -> dict[str, str]:
    granted = story.client.post(
        "/consents",
        json={
            "relative": {"identifier": {"kind": "personnummer", "value": story.relative}},
            "period": {"end": "2099-01-01T00:00:00Z"},
            "may_report": may_report,
        },
        headers=story.patient,
    )
    assert granted.status_code == 201, granted.text
    return issuer.headers(
        "relative",
        patient=story.patient_claim,
        subject="relative-of-the-story",
        fhirUser=granted.json()["fhir_user"],
    )


def test_a_care_unit_and_a_relative_read_the_page_and_only_the_patient_acts_on_it(
    story: Story, issuer: TestIssuer
) -> None:
    plan = f"/patients/{story.patient_claim}/plan"
    progress = f"{plan}/contracts/{story.id}/activities/walk/progress"
    relative = _relative_with_leave(story, issuer, may_report=False)
    before = story.read()

    for reader in (story.ehr, relative):
        page = story.client.get(plan, headers={**reader, **HTML})
        assert page.status_code == 200, page.text
        assert story.data["title"] in page.text
        assert "Berätta hur det går" not in page.text
        assert "närståendes tillgång" not in page.text
    shown = story.client.get(progress, headers={**relative, **HTML})
    assert shown.status_code == 200
    assert "form_token" not in shown.text
    # Even a form token of their own (say, kept from a page shown in error) acts for nobody
    # but the patient.
    token = story.client.app.state.form_tokens.make("relative-of-the-story")
    sent = _post(story.client, progress, relative, {"status": "completed", "form_token": token})

    assert sent.status_code == 403
    assert "Det här kan du inte göra här" in sent.text
    assert story.read() == before
    # Another patient's page is not theirs to open, whatever the address says.
    someone = f"/patients/personnummer|{unique_personnummer()}/plan"
    assert story.client.get(someone, headers={**story.patient, **HTML}).status_code == 403


def test_a_relative_whose_leave_allows_it_says_how_their_own_activity_goes_and_no_other(
    story: Story, issuer: TestIssuer
) -> None:
    relative = _relative_with_leave(story, issuer, may_report=True)
    theirs = next(a for a in story.data["activities"] if a["owner"] == "relative")
    plan = f"/patients/{story.patient_claim}/plan"
    url = f"{plan}/contracts/{story.id}/activities/{theirs['key']}/progress"
    page = story.client.get(plan, headers={**relative, **HTML})

    # A link to each of their own activities, none to the patient's or the care's.
    named = story.data["relatives"][0]["key"]
    own = [a["key"] for a in story.data["activities"] if a.get("relative") == named]
    assert theirs["key"] in own
    assert page.text.count("Berätta hur det går") == len(own)
    assert all(f"/activities/{key}/progress" in page.text for key in own)
    assert "/activities/walk/progress" not in page.text
    token = _form_token(story.client, url, relative)
    sent = _post(story.client, url, relative, {"status": "in-progress", "form_token": token})
    walk = f"{plan}/contracts/{story.id}/activities/walk/progress"
    not_theirs = _post(story.client, walk, relative, {"status": "completed", "form_token": token})

    assert sent.status_code == 303, sent.text
    reported = next(a for a in story.read()["activities"] if a["key"] == theirs["key"])
    assert (reported["status"], reported["progress"]["by"]) == ("in-progress", "relative")
    assert not_theirs.status_code == 403
    assert next(a for a in story.read()["activities"] if a["key"] == "walk")["status"] != (
        "completed"
    )
    # The leave lets them report, not act for the patient.
    proposals = f"{plan}/contracts/{story.id}/proposals"
    wish = {"kind": "wish", "text": "Ringa oftare", "form_token": token}
    assert _post(story.client, proposals, relative, wish).status_code == 403


def test_an_answer_to_a_version_that_changed_meanwhile_asks_to_read_it_again(
    story: Story, issuer: TestIssuer
) -> None:
    revised = story.post("revise", story.ehr, story.agreed["version"]).json()
    proposed = story.post("propose", story.ehr, revised["version"]).json()
    url = f"/patients/{story.patient_claim}/plan/contracts/{story.id}"
    token = _form_token(story.client, url, story.patient)
    # The unit puts it to the patient again while the patient reads: a new version.
    again = story.post("propose", story.ehr, proposed["version"])
    assert again.status_code == 200, again.text
    before = story.read()

    answer = {"decision": "agree", "version": str(proposed["version"]), "form_token": token}
    sent = _post(story.client, url, story.patient, answer)

    assert sent.status_code in (409, 412)
    assert "Kontraktet har ändrats sedan du öppnade sidan" in sent.text
    assert "Öppna sidan igen" in sent.text
    assert story.read() == before
    # Read again, the same answer goes through.
    token = _form_token(story.client, url, story.patient)
    fresh = {**answer, "version": str(again.json()["version"]), "form_token": token}
    agreed = _post(story.client, url, story.patient, fresh)
    assert agreed.status_code == 303
    # The patient is told that this signature made the contract hold.
    assert agreed.headers["location"].endswith("/plan?lang=sv&done=in_force")
    # Nothing of the terms changed in the revision: the clinician's signature still holds,
    # and the patient's own makes the contract agreed again.
    after = story.read()
    assert after["status"] == "agreed"
    agreed = {a["party"]: a["agreed_at"] for a in after["agreements"]}
    assert agreed["patient"] > max(a["agreed_at"] for a in story.agreed["agreements"])


def test_a_form_the_browser_would_not_send_is_said_at_each_field_and_nothing_written(
    story: Story,
) -> None:
    url = f"/patients/{story.patient_claim}/plan/contracts/{story.id}/activities/walk/progress"
    token = _form_token(story.client, url, story.patient)
    before = story.read()

    sent = _post(
        story.client,
        url,
        story.patient,
        {"status": "cancelled", "note": "x" * 501, "on": "31/12", "form_token": token},
        **{"Accept-Language": "en"},
    )

    assert sent.status_code == 422
    assert sent.text.count('aria-invalid="true"') == 3
    assert "Choose how the activity is going" in sent.text
    assert "The note can be at most 500 characters" in sent.text
    assert "Write the date as year-month-day" in sent.text
    # What was typed stays, to be corrected rather than typed again.
    assert "x" * 501 in sent.text
    assert story.read() == before
    # A form whose own fields were tampered with is no person's mistake: refused whole.
    url = f"/patients/{story.patient_claim}/plan/relatives"
    token = _form_token(story.client, url, story.patient)
    broken = {"kind": "hsa-id", "number": story.relative, "until": "2099-01-01"}
    refused = _post(story.client, url, story.patient, {**broken, "form_token": token})
    assert refused.status_code == 422
    assert "Något i formuläret kunde inte tas emot" in refused.text
    leaves = story.client.get("/consents", headers=story.patient).json()
    assert leaves == []


def test_every_text_of_the_pages_is_there_in_every_language() -> None:
    texts = json.loads((PAGE_TEXTS).read_text("utf-8"))
    names = {language: set(texts[language]) for language in ("sv", "nb", "en")}

    assert names["sv"] == names["nb"] == names["en"]
    used = set(re.findall(r"\bt\.(\w+)", "".join(p.read_text() for p in TEMPLATES)))
    assert used - names["en"] == set()
