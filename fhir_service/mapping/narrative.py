"""The human-readable narrative of a contract (``CarePlan.text.div``): FHIR XHTML, sv/nb/en.

Only the elements FHIR allows in a narrative are used (no scripts, styles or event attributes),
and every piece of text is escaped, so whatever a person typed stays text.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from typing import Any

from fhir_service.contract import (
    Activity,
    AgreedTime,
    CareContact,
    Confidentiality,
    Contract,
    Name,
    Period,
    Professional,
)
from fhir_service.mapping.tables import (
    MAPPINGS_DIR,
    Language,
    code_table,
    relationships,
    schedule_units,
)

__all__ = ["NARRATIVE_MARK", "narrative", "untitled"]

_XHTML = "http://www.w3.org/1999/xhtml"
_DASH = " \u2013 "


@cache
def _labels(language: Language) -> dict[str, Any]:
    table: dict[str, Any] = json.loads(
        (MAPPINGS_DIR / "narrative-labels.json").read_text(encoding="utf-8")
    )
    return dict(table[language])


NARRATIVE_MARK = 'class="patient-contract"'
"""In the ``div`` of every narrative written here: one without it is a sender's own."""


def untitled(language: Language) -> str:
    """What a plan its sender gave no title, description or category is called."""
    return str(_labels(language)["untitled"])


def narrative(contract: Contract, language: Language = "sv") -> str:
    """The whole contract as one XHTML ``div``: who does what, goals, contacts, times."""
    labels = _labels(language)
    status = code_table("contract-status").display(contract.status, language)
    parts = [
        f'<div xmlns="{_XHTML}" lang="{language}" {NARRATIVE_MARK}>',
        f"<h1>{_t(labels['contract'])}: {_t(contract.title)}</h1>",
        "<p>",
        f"<b>{_t(labels['patient'])}</b>: {_t(_name(contract.patient.name))}<br/>",
        f"<b>{_t(labels['responsible'])}</b>: {_responsible(contract)}<br/>",
        f"<b>{_t(labels['status'])}</b>: {_t(status)}",
    ]
    if contract.period:
        parts.append(f"<br/><b>{_t(labels['period'])}</b>: {_t(_period(contract.period))}")
    parts.append("</p>")
    # Restricted activities, goals and times are left out: the narrative goes wherever the
    # CarePlan goes, to readers who may not see them.
    activities = [a for a in contract.activities if a.confidentiality is Confidentiality.NORMAL]
    parts += _section(labels["agreement"], [_activity(a, contract, language) for a in activities])
    goals = [g for g in contract.goals if g.confidentiality is Confidentiality.NORMAL]
    times = [t for t in contract.agreed_times if t.confidentiality is Confidentiality.NORMAL]
    parts += _section(labels["goals"], [_t(g.description) for g in goals])
    parts += _section(labels["resources"], [_t(r) for r in contract.patient_resources])
    parts += _section(labels["wishes"], [_t(w) for w in contract.wishes])
    parts += _section(
        labels["care_contacts"], [_care_contact(c, language) for c in contract.care_contacts]
    )
    parts += _section(labels["agreed_times"], [_time(t) for t in times])
    team = [_professional(p) for p in contract.professionals]
    team += [
        f"{_t(_name(r.name))} ({_t(relationships().display(r.relationship, language))})"
        for r in contract.relatives
    ]
    parts += _section(labels["team"], team)
    if contract.agreements:
        signed = ", ".join(
            f"{_t(a.party)} {_t(a.agreed_at.isoformat())}" for a in contract.agreements
        )
        parts.append(f"<p><b>{_t(labels['agreed_by'])}</b>: {signed}</p>")
    parts.append("</div>")
    return "".join(parts)


def _section(heading: str, items: list[str]) -> list[str]:
    if not items:
        return []
    return [f"<h2>{_t(heading)}</h2><ul>", *(f"<li>{item}</li>" for item in items), "</ul>"]


def _activity(activity: Activity, contract: Contract, language: Language) -> str:
    owner = code_table("activity-owner").display(activity.owner, language)
    if activity.organization is not None:
        owner = activity.organization.name
    elif activity.relative is not None:
        relative = next(r for r in contract.relatives if r.key == activity.relative)
        owner = _name(relative.name)
    text = f"<b>{_t(owner)}</b>: {_t(activity.description)}"
    labels = _labels(language)
    if activity.schedule:
        unit = schedule_units().display(activity.schedule.unit, language)
        every = f"{activity.schedule.frequency} {labels['times']} {labels['per']}"
        period = "" if activity.schedule.period == 1 else f"{activity.schedule.period} "
        text += f" ({_t(f'{every} {period}{unit}')})"
    if activity.period:
        text += f" [{_t(_period(activity.period))}]"
    return text


def _care_contact(contact: CareContact, language: Language) -> str:
    labels = _labels(language)
    text = _professional(contact.professional)
    if contact.requested_by_patient:
        text += f", {_t(labels['requested'])}"
    if contact.how_to_reach:
        text += f"<br/>{_t(labels['reach'])}: {_t(contact.how_to_reach)}"
    return text


def _time(time: AgreedTime) -> str:
    when = (
        f"{time.start.isoformat()}{_DASH}{time.end.isoformat()}" if time.start and time.end else ""
    )
    text = f"{_t(time.description)}, {_t(time.organization.name)}"
    return f"{_t(when)}: {text}" if when else text


def _responsible(contract: Contract) -> str:
    if contract.responsible_clinician is None:
        return _t(contract.responsible_unit.name)
    return _professional(contract.responsible_clinician)


def _professional(professional: Professional) -> str:
    return f"{_t(_name(professional.name))}, {_t(professional.organization.name)}"


def _name(name: Name) -> str:
    return " ".join([*name.given, name.family])


def _period(period: Period) -> str:
    start = period.start.isoformat() if period.start else ""
    end = period.end.isoformat() if period.end else ""
    return f"{start}{_DASH}{end}"


def _t(text: str) -> str:
    return escape(text, quote=False)
