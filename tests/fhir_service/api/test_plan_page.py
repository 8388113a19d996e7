"""The patient's plan page in a real headless Chromium, against the page_service process and HAPI.

Each seed scenario is stored through the JSON facade, then opened as its patient would: with the
patient's token (a portal's backend adds it) and the browser's own Accept headers. Screenshots go
to ``$PLAN_SCREENSHOT_DIR`` when set (to look at), otherwise to the test's temporary directory
(the fixtures are in this folder's conftest).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.auth import TestIssuer
from tests.support import load_data, unique_fodselsnummer, unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
SCENARIOS = sorted(p.stem for p in EXAMPLES.glob("*.json"))
LOCALES = {"norwegian-individual-plan": "nb-NO"}
HEADINGS = {"sv": "Min sammanhållna plan", "nb": "Min helhetlige plan", "en": "My coherent plan"}


def _stored(
    page_service: str, issuer: TestIssuer, scenario: str, restricted_goal: bool = False
) -> dict[str, Any]:
    """The scenario as a new patient's contract, its times still to come and its contact current."""
    data: dict[str, Any] = json.loads((EXAMPLES / f"{scenario}.json").read_text("utf-8"))
    if restricted_goal:
        data["goals"][0]["confidentiality"] = "restricted"
    data["id"] = f"page-{uuid.uuid4().hex[:16]}"
    identifier = data["patient"]["identifier"]
    identifier["value"] = (
        unique_fodselsnummer() if identifier["kind"] == "fodselsnummer" else unique_personnummer()
    )
    starts = [datetime.fromisoformat(t["start"]) for t in data["agreed_times"] if t.get("start")]
    shift = datetime.now(UTC) + timedelta(days=7) - min(starts)
    for time in data["agreed_times"]:
        for end in ("start", "end"):
            if time.get(end):
                time[end] = (datetime.fromisoformat(time[end]) + shift).isoformat()
    for contact in data["care_contacts"]:
        if contact.get("period", {}).get("end"):
            del contact["period"]["end"]
    unit = data["responsible_clinician"]["organization"]["identifier"]
    headers = issuer.headers("ehr", organization=f"{unit['kind']}|{unit['value']}")
    created = httpx.post(f"{page_service}/contracts", json=data, headers=headers, timeout=60)
    assert created.status_code == 201, created.text
    return data


def _open(
    browser: Browser,
    page_service: str,
    issuer: TestIssuer,
    contract: dict[str, Any],
    **context: Any,
) -> Page:
    identifier = contract["patient"]["identifier"]
    patient = f"{identifier['kind']}|{identifier['value']}"
    page = browser.new_page(
        extra_http_headers={"Authorization": f"Bearer {issuer.token('patient', patient=patient)}"},
        **context,
    )
    response = page.goto(f"{page_service}/patients/{patient}/plan")
    assert response is not None
    assert response.status == 200, response.text()
    assert response.headers["content-type"].startswith("text/html")
    return page


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_seed_scenario_renders_for_its_patient_in_chromium(
    page_service: str, browser: Browser, issuer: TestIssuer, screenshots: Path, scenario: str
) -> None:
    contract = _stored(page_service, issuer, scenario)
    locale = LOCALES.get(scenario, "sv-SE")
    language = locale[:2]

    page = _open(browser, page_service, issuer, contract, locale=locale)
    shot = screenshots / f"plan-{scenario}.png"
    page.screenshot(path=shot, full_page=True)

    assert page.locator("html").get_attribute("lang") == language
    assert HEADINGS[language] in page.locator("h1").inner_text()
    assert shot.stat().st_size > 10_000
    if contract["status"] == "draft":
        # The patient is not shown a draft, and is told that something is not shown.
        assert page.locator(".withheld").is_visible()
        assert contract["title"] not in page.content()
        return
    assert page.locator("#who + h3").inner_text() in ("Det här gör du", "Dette gjør du")
    own = [a["description"] for a in contract["activities"] if a["owner"] == "patient"]
    first_list = page.locator("#who ~ ul").first.inner_text()
    assert all(description in first_list for description in own)
    contact = contract["care_contacts"][0]["professional"]["name"]["family"]
    assert contact in page.locator("#contacts ~ .card").first.inner_text()
    starts = page.locator("ol.timeline time").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('datetime'))"
    )
    moments = [datetime.fromisoformat(s) for s in starts]
    assert moments == sorted(moments)
    assert moments, "the scenario's booked times are upcoming"


def test_restricted_content_is_withheld_and_the_page_says_so(
    page_service: str, browser: Browser, issuer: TestIssuer
) -> None:
    contract = _stored(page_service, issuer, "stroke-rehabilitation", restricted_goal=True)
    hidden = contract["goals"][0]["description"]

    page = _open(browser, page_service, issuer, contract)

    assert page.locator(".withheld").is_visible()
    assert hidden not in page.content()
    assert contract["goals"][1]["description"] in page.locator("#goals ~ ul").first.inner_text()


def test_the_page_works_by_keyboard_and_without_javascript_in_every_language(
    page_service: str, browser: Browser, issuer: TestIssuer
) -> None:
    contract = _stored(page_service, issuer, "knee-replacement")
    page = _open(browser, page_service, issuer, contract, java_script_enabled=False)

    # The skip link, then the language links: Svenska, Norsk, English.
    for _ in range(4):
        page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    skip_focused = page.evaluate("document.activeElement.getAttribute('href')")
    page.keyboard.press("Enter")
    landed = page.evaluate("document.activeElement.id")

    assert skip_focused == "#content"
    assert landed == "content"
    assert focused == "English"
    assert page.locator("html").get_attribute("lang") == "en"
    assert HEADINGS["en"] in page.locator("h1").inner_text()


def test_text_has_enough_contrast_for_wcag_aa(
    page_service: str, browser: Browser, issuer: TestIssuer
) -> None:
    page = _open(
        browser, page_service, issuer, _stored(page_service, issuer, "stroke-rehabilitation")
    )

    ratios = page.evaluate(_CONTRAST_SCRIPT)

    assert ratios, "no text was measured"
    worst = min(ratios, key=lambda r: r["ratio"])
    assert worst["ratio"] >= 4.5, worst


# The WCAG 2 contrast ratio of each text element's colour against its nearest background.
_CONTRAST_SCRIPT = """
() => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = c => {
    const [r, g, b] = c.map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = el => {
    for (let n = el; n; n = n.parentElement) {
      const c = getComputedStyle(n).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return rgb(c);
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll('h1, h2, h3, p, li, span, a, strong, time')]
    .filter(el => el.offsetParent !== null && el.textContent.trim())
    .map(el => {
      const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
      return {text: el.textContent.trim().slice(0, 40),
              ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)};
    });
}
"""


def test_booked_times_offer_cancel_and_rebook_links_where_the_clinic_allows(
    page_service: str, browser: Browser, issuer: TestIssuer
) -> None:
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"page-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    unit = data["responsible_clinician"]["organization"]
    in_a_week = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    tomorrow_morning = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=12)

    def booked(key: str, time_type: str | None, start: datetime) -> dict[str, Any]:
        end = start + timedelta(minutes=30)
        time = {
            "key": key,
            "description": f"Tid {key}",
            "status": "booked",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "organization": unit,
        }
        return time if time_type is None else {**time, "time_type": time_type}

    data["agreed_times"] = [
        booked("nurse", "nurse-visit", in_a_week),
        booked("psychiatrist", "psychiatrist-followup", in_a_week + timedelta(hours=1)),
        booked("too-late", "nurse-visit", tomorrow_morning),
        booked("by-phone", None, in_a_week + timedelta(hours=2)),
    ]
    headers = issuer.headers("ehr", organization=f"hsa-id|{unit['identifier']['value']}")
    created = httpx.post(f"{page_service}/contracts", json=data, headers=headers, timeout=60)
    assert created.status_code == 201, created.text
    agreed = httpx.post(
        f"{page_service}/contracts/{data['id']}/agree",
        json=load_data("booking/agreements.json"),
        headers={**headers, "If-Match": 'W/"1"'},
        timeout=60,
    )
    assert agreed.status_code == 200, agreed.text

    page = _open(browser, page_service, issuer, data, locale="sv-SE")
    links = {
        key: page.locator("ol.timeline li", has_text=f"Tid {key}")
        .locator("a")
        .evaluate_all("links => links.map(a => a.getAttribute('href'))")
        for key in ("nurse", "psychiatrist", "too-late", "by-phone")
    }

    base = f"https://tidbok.example/{{}}?contract={data['id']}&time="
    assert links == {
        "nurse": [base.format("cancel") + "nurse", base.format("rebook") + "nurse"],
        "psychiatrist": [base.format("cancel") + "psychiatrist"],
        "too-late": [],
        "by-phone": [],
    }
    # The link names its time for screen readers, which read links out of context.
    assert page.get_by_role("link", name=re.compile(r"^Avboka\s*:\s*Tid nurse$")).count() == 1
    # Each time says what the clinic calls its type, as the unit defined it, in the reader's
    # language.
    timeline = page.locator("ol.timeline").inner_text()
    assert "Besök hos sjuksköterska: Tid nurse" in timeline
    assert "Återbesök hos psykiater: Tid psychiatrist" in timeline
    english = _open(browser, page_service, issuer, data, locale="en-GB")
    assert (
        "Follow-up with the psychiatrist: Tid psychiatrist"
        in english.locator("ol.timeline").inner_text()
    )
