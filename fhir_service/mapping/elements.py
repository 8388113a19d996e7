"""FHIR datatypes built from the contract's parts, and the stable fullUrls of records."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any

from fhir_service.contract import (
    CareGuaranteeCase,
    Confidentiality,
    Contact,
    GuaranteeVerdict,
    Hold,
    Identifier,
    Name,
    OnlineRules,
    PatientReview,
    Period,
    ProgressReport,
    Proposal,
)
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_of
from fhir_service.mapping.tables import code_table, snomed_for_role

__all__ = [
    "CONFIDENTIALITY_SYSTEM",
    "SNOMED",
    "activity_confidentiality_of",
    "activity_labels",
    "appointment_hold",
    "appointment_hold_of",
    "care_guarantee",
    "care_guarantee_of",
    "confidentiality_of",
    "contact_point",
    "duration",
    "guarantee_verdict",
    "guarantee_verdict_of",
    "human_name",
    "identifier",
    "identity_url",
    "instant",
    "key_of",
    "note",
    "online_rules",
    "online_rules_of",
    "patient_review",
    "patient_review_of",
    "period",
    "progress",
    "progress_report_id",
    "proposal_note",
    "proposal_note_id",
    "proposal_of",
    "references",
    "role_codings",
    "security_labels",
]

Resource = dict[str, Any]
SNOMED = "http://snomed.info/sct"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
_CONFIDENTIALITY_CODES = {Confidentiality.RESTRICTED: "R", Confidentiality.VERY_RESTRICTED: "V"}


def references(value: object) -> Iterator[str]:
    """Every ``reference`` string anywhere in ``value`` (a resource, or any part of one)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


@functools.lru_cache(maxsize=8192)
def identity_url(resource_type: str, system: str, value: str) -> str:
    """The stable ``urn:uuid`` fullUrl of the record ``resource_type`` with that identifier.

    Remembered: a contract's Bundle names each shared record (its units, professionals,
    patient) several times, and the same ones recur across contracts; the SHA-1 of a name-based
    UUID was a tenth of the service's own time of a create.
    """
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{resource_type}|{system}|{value}')}"


def identifier(value: Identifier) -> Resource:
    """A national identifier with the system we emit for its kind."""
    return {"system": system_of(value), "value": value.value}


def key_of(identifier: Identifier) -> str:
    """``kind:value``: unique across kinds, for our own composite identifiers."""
    return f"{identifier.kind}:{identifier.value}"


def human_name(name: Name) -> Resource:
    """A HumanName."""
    out: Resource = {"family": name.family}
    if name.given:
        out["given"] = list(name.given)
    return out


def contact_point(contact: Contact) -> Resource:
    """A ContactPoint."""
    return {"system": contact.system, "value": contact.value}


def role_codings(role: str) -> list[Resource]:
    """Our care-team-role coding, and the SNOMED CT one where the ConceptMap has it."""
    codings = [code_table("care-team-role").coding(role)]
    snomed = snomed_for_role(role)
    if snomed:
        codings.append({"system": SNOMED, "code": snomed[0], "display": snomed[1]})
    return codings


def period(value: Period) -> Resource:
    """A Period of dates."""
    out: Resource = {}
    if value.start:
        out["start"] = _date(value.start)
    if value.end:
        out["end"] = _date(value.end)
    return out


def note(kind: str, text: str, patient_url: str) -> Resource:
    """The patient's own words as an Annotation, marked resource or wish."""
    return {
        "extension": [
            {"url": urls.EXT_NOTE_KIND, "valueCoding": code_table("note-kind").coding(kind)}
        ],
        "authorReference": {"reference": patient_url},
        "text": text,
    }


def progress_report_id(key: str) -> str:
    """The element id of the Annotation in ``CarePlan.activity.progress`` that is activity
    ``key``'s last progress report (element ids are unique in a resource; a key has no colon);
    the sender's own progress notes beside it are theirs."""
    return f"progress:{key}"


def progress(key: str, report: ProgressReport, status: str, author_url: str) -> Resource:
    """Activity ``key``'s last progress report as an Annotation: who, when, and their note,
    or, with none, the status it set."""
    kind = "progress" if report.note is not None else "progress-status"
    return {
        "id": progress_report_id(key),
        "extension": [
            {"url": urls.EXT_NOTE_KIND, "valueCoding": code_table("note-kind").coding(kind)}
        ],
        "authorReference": {"reference": author_url},
        "time": instant(report.reported_at),
        "text": report.note if report.note is not None else status,
    }


def proposal_note_id(key: str) -> str:
    """The element id of the CarePlan note that is the patient's proposal ``key``."""
    return f"proposal:{key}"


def proposal_note(proposal: Proposal, patient_url: str) -> Resource:
    """The patient's proposal as a CarePlan note: their words, by them, when; what kind, about
    what, and what the unit made of it in the extension patient-proposal."""
    parts: list[Resource] = [{"url": "kind", "valueCode": proposal.kind.value}]
    if proposal.about is not None:
        parts.append({"url": "about", "valueString": proposal.about})
    parts.append({"url": "status", "valueCode": proposal.status.value})
    if proposal.reason is not None:
        parts.append({"url": "reason", "valueString": proposal.reason})
    kind = code_table("note-kind").coding("proposal")
    return {
        "id": proposal_note_id(proposal.key),
        "extension": [
            {"url": urls.EXT_NOTE_KIND, "valueCoding": kind},
            {"url": urls.EXT_PATIENT_PROPOSAL, "extension": parts},
        ],
        "authorReference": {"reference": patient_url},
        "time": instant(proposal.proposed_at),
        "text": proposal.text,
    }


def proposal_of(note: Resource) -> Proposal:
    """The proposal a CarePlan note of kind proposal holds (``ValueError`` and the like when
    it is incomplete)."""
    parts = _parts(note, urls.EXT_PATIENT_PROPOSAL) or {}
    return Proposal(
        key=str(note["id"]).removeprefix("proposal:"),
        kind=parts["kind"]["valueCode"],
        text=note["text"],
        about=parts["about"]["valueString"] if "about" in parts else None,
        proposed_at=note["time"],
        status=parts["status"]["valueCode"],
        reason=parts["reason"]["valueString"] if "reason" in parts else None,
    )


def _date(value: date) -> str:
    return value.isoformat()


def instant(value: datetime) -> str:
    """An instant with its offset, to the second as the model keeps it."""
    return value.isoformat()


def security_labels(confidentiality: Confidentiality) -> list[Resource]:
    """``meta.security`` for ``confidentiality``: empty for normal content, as FHIR assumes."""
    code = _CONFIDENTIALITY_CODES.get(confidentiality)
    return [] if code is None else [{"system": CONFIDENTIALITY_SYSTEM, "code": code}]


def confidentiality_of(resource: Resource) -> Confidentiality:
    """The strictest confidentiality label in ``resource``'s ``meta.security``.

    Whoever labelled it (we, or another system writing to HAPI), very restricted wins over
    restricted, and content without a label is normal.
    """
    meta = resource.get("meta")
    labels = meta.get("security") if isinstance(meta, dict) else None
    return _strictest(labels if isinstance(labels, list) else [])


def activity_labels(confidentiality: Confidentiality) -> list[Resource]:
    """The activity-confidentiality extension of an activity's ``detail``: an activity is part
    of its CarePlan, with no ``meta.security`` of its own. Empty for normal content."""
    return [
        {"url": urls.EXT_ACTIVITY_CONFIDENTIALITY, "valueCoding": label}
        for label in security_labels(confidentiality)
    ]


def activity_confidentiality_of(detail: Resource) -> Confidentiality:
    """The strictest label of an activity's ``detail`` (`activity_labels`); normal without."""
    extensions = detail.get("extension")
    return _strictest(
        extension.get("valueCoding")
        for extension in (extensions if isinstance(extensions, list) else [])
        if isinstance(extension, dict) and extension.get("url") == urls.EXT_ACTIVITY_CONFIDENTIALITY
    )


def _strictest(labels: Iterable[object]) -> Confidentiality:
    codes = {
        label.get("code")
        for label in labels
        if isinstance(label, dict) and label.get("system") == CONFIDENTIALITY_SYSTEM
    }
    if "V" in codes:
        return Confidentiality.VERY_RESTRICTED
    # U, L, M and N are no stricter than normal for what we show.
    return Confidentiality.RESTRICTED if "R" in codes else Confidentiality.NORMAL


def care_guarantee(case: CareGuaranteeCase) -> Resource:
    """The CarePlan's care-guarantee extension: whose guarantee, which step, since when."""
    parts: list[Resource] = [
        {"url": "jurisdiction", "valueCode": case.jurisdiction},
        {"url": "step", "valueCoding": {"system": urls.CS_CARE_GUARANTEE_STEP, "code": case.step}},
        {"url": "since", "valueDateTime": instant(case.since)},
    ]
    if case.deadline is not None:
        parts.append({"url": "deadline", "valueDate": case.deadline.isoformat()})
    return {"url": urls.EXT_CARE_GUARANTEE, "extension": parts}


def care_guarantee_of(careplan: Resource) -> CareGuaranteeCase | None:
    """The case a CarePlan's care-guarantee extension holds; None without one."""
    parts = _parts(careplan, urls.EXT_CARE_GUARANTEE)
    if parts is None:
        return None
    return CareGuaranteeCase(
        jurisdiction=parts["jurisdiction"]["valueCode"],
        step=parts["step"]["valueCoding"]["code"],
        since=parts["since"]["valueDateTime"],
        deadline=parts["deadline"]["valueDate"] if "deadline" in parts else None,
    )


def patient_review(review: PatientReview) -> Resource:
    """The CarePlan's record that the version is put to the patient, and of their decline."""
    parts: list[Resource] = [{"url": "proposed", "valueDateTime": instant(review.proposed_at)}]
    if review.declined_at is not None:
        parts.append({"url": "declined", "valueDateTime": instant(review.declined_at)})
    if review.comment is not None:
        parts.append({"url": "comment", "valueString": review.comment})
    return {"url": urls.EXT_PATIENT_REVIEW, "extension": parts}


def patient_review_of(careplan: Resource) -> PatientReview | None:
    """The review a CarePlan's patient-review extension holds; None without one."""
    parts = _parts(careplan, urls.EXT_PATIENT_REVIEW)
    if parts is None:
        return None
    return PatientReview(
        proposed_at=parts["proposed"]["valueDateTime"],
        declined_at=parts["declined"]["valueDateTime"] if "declined" in parts else None,
        comment=parts["comment"]["valueString"] if "comment" in parts else None,
    )


def guarantee_verdict(verdict: GuaranteeVerdict) -> Resource:
    """The Appointment's record of how it stood against the care guarantee when booked."""
    return {
        "url": urls.EXT_GUARANTEE_VERDICT,
        "extension": [
            {"url": "deadline", "valueDateTime": instant(verdict.deadline)},
            {"url": "late", "valueBoolean": verdict.late},
            {"url": "daysOver", "valueInteger": verdict.days_over},
        ],
    }


def appointment_hold(hold: Hold) -> Resource:
    """A pending Appointment's hold: until when, and by whom."""
    return {
        "url": urls.EXT_APPOINTMENT_HOLD,
        "extension": [
            {"url": "until", "valueInstant": instant(hold.until)},
            {"url": "holder", "valueString": hold.holder},
        ],
    }


def appointment_hold_of(appointment: Resource) -> Hold | None:
    """The hold an Appointment records; None without one."""
    parts = _parts(appointment, urls.EXT_APPOINTMENT_HOLD)
    if parts is None:
        return None
    return Hold(until=parts["until"]["valueInstant"], holder=parts["holder"]["valueString"])


def duration(value: int, unit: str) -> Resource:
    """A Duration of ``value`` in the UCUM unit ``unit`` (``min``, ``h``, ``d``)."""
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def online_rules(rules: OnlineRules) -> Resource:
    """A booked Appointment's online rules, as they were when it was booked."""
    return {
        "url": urls.EXT_ONLINE_RULES,
        "extension": [
            {"url": "patientCancel", "valueBoolean": rules.cancel},
            {"url": "patientRebook", "valueBoolean": rules.rebook},
            {
                "url": "cancelCutoff",
                "valueDuration": duration(rules.cancel_cutoff_hours, "h"),
            },
        ],
    }


def online_rules_of(appointment: Resource) -> OnlineRules | None:
    """The online rules an Appointment was booked under; None without them."""
    parts = _parts(appointment, urls.EXT_ONLINE_RULES)
    if parts is None:
        return None
    return OnlineRules(
        cancel=parts["patientCancel"]["valueBoolean"],
        rebook=parts["patientRebook"]["valueBoolean"],
        cancel_cutoff_hours=parts["cancelCutoff"]["valueDuration"]["value"],
    )


def guarantee_verdict_of(appointment: Resource) -> GuaranteeVerdict | None:
    """The verdict an Appointment records; None without one."""
    parts = _parts(appointment, urls.EXT_GUARANTEE_VERDICT)
    if parts is None:
        return None
    return GuaranteeVerdict(
        deadline=parts["deadline"]["valueDateTime"],
        late=parts["late"]["valueBoolean"],
        days_over=parts["daysOver"]["valueInteger"],
    )


def _parts(resource: Resource, url: str) -> dict[str, Resource] | None:
    # A malformed extension (another writer's) has no parts: reading it fails as incomplete.
    extensions = resource.get("extension")
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, dict) and extension.get("url") == url:
            parts = extension.get("extension")
            return {
                str(part.get("url")): part
                for part in (parts if isinstance(parts, list) else [])
                if isinstance(part, dict)
            }
    return None
