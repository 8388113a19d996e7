"""What a sender wrote that the contract has no field for: kept when a contract is read, given
back when it is written.

An EHR's care plan says more than a contract's fields hold: a description, its own codings beside
ours, links from an activity to the goals it serves, a second identifier, an extension of its own.
None of it may be lost. When a contract is read, each of its records (the CarePlan with its
activities, CareTeams, Goals, Appointments, RelatedPersons, and the shared records it names) is
compared with what the contract writes for it, and what only the sender wrote is kept: the
*difference*, never the whole resource, so that a value the contract does hold comes back as the
contract now says, and one removed from the contract stays removed. When the contract is written,
each record is its mapping with the kept elements merged back in.

- Objects are compared member by member; a value both hold is the contract's.
- In lists, an item of the sender's is matched to ours by what identifies it (an identifier's or a
  coding's system and value or code, a participant's member or actor, a reference, an element
  id): a matched item keeps only what ours lacks, an unmatched one is kept whole.
- References to the contract's own records are kept as the record's identity (its stable
  fullUrl), so that they follow the record whatever id a server gave it, and are dropped when the
  contract no longer holds the record (a link to a goal that was removed).
- Extensions, identifiers and codings in our namespace are the contract's, never kept.
- Where the contract holds a date and the sender wrote a time on that day, the time stays.
- ``id`` and ``meta`` are the server's and the profile's, and are not kept; a narrative the sender
  wrote (``text`` without our mark) is kept whole and shown instead of ours.

A sent record that is none of the contract's parts (a Condition the plan addresses, the sender's
own care team, a goal the contract could not read) is kept whole (:func:`record`) under an
identifier of ours, and written and deleted with the contract like its parts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fhir_service.mapping import urls
from fhir_service.mapping.narrative import NARRATIVE_MARK

__all__ = ["RECORD_TYPES", "Sent", "carried_over", "is_record", "kept", "merged", "record"]

Resource = dict[str, Any]
Sent = dict[str, Resource]
"""Kept elements by the identity fullUrl of the record they belong to; for a record that is none
of the contract's parts (see :func:`record`), the whole record."""

RECORD_TYPES = frozenset(
    {
        "AllergyIntolerance",
        "Appointment",
        "CareTeam",
        "ClinicalImpression",
        "Communication",
        "CommunicationRequest",
        "Condition",
        "DeviceRequest",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "Endpoint",
        "FamilyMemberHistory",
        "Goal",
        "HealthcareService",
        "Immunization",
        "ImmunizationRecommendation",
        "Location",
        "Medication",
        "MedicationRequest",
        "MedicationStatement",
        "NutritionOrder",
        "Observation",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "RiskAssessment",
        "ServiceRequest",
        "Substance",
        "Task",
    }
)
"""What a care plan refers to that may come with it as a record of the contract: the patient's
clinical records and the parties, places and endpoints named, never another patient, a
Provenance, an AuditEvent or a server's own resources (Subscription, SearchParameter, ...)."""

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SERVER_OWNED = frozenset({"resourceType", "id", "meta"})
_MATCHED_BY: tuple[tuple[str, ...], ...] = (
    ("id",),
    ("system", "value"),
    ("system", "code"),
    ("member",),
    ("actor",),
    ("reference",),
)
_SENDERS_WORD = frozenset({"intent"})
"""Elements where the sender's value stays, though the contract writes one: a plan sent as an
``order`` (authorised for action, as Synthea's are) is the contract's plan all the same."""
_REFERRERS = frozenset({"member", "actor"})
"""Keys whose reference is what an item is about: the item goes when its record does."""


def kept(
    sent: Iterable[tuple[str, Resource]],
    ours: Mapping[str, Resource],
    identity_of: Mapping[str, str],
) -> Sent:
    """What each sent record holds beyond ours.

    ``sent``: (identity fullUrl, the record as sent) for each record of the contract found among
    what was sent; ``ours``: the contract's own mapping of each record, by identity fullUrl;
    ``identity_of``: the identity fullUrl of each record as the sender referred to it (its
    fullUrl, ``Type/id``), so that references are kept in a form that outlives the sender's ids.
    """
    found: Sent = {}
    for url, resource in sent:
        mine = ours.get(url)
        if mine is None:
            continue
        canonical = _canonical(resource, identity_of)
        difference: Resource = {}
        for key, value in canonical.items():
            if key in _SERVER_OWNED:
                continue
            if key == "text":
                if NARRATIVE_MARK not in str(_obj(value).get("div", "")):
                    difference[key] = value
                continue
            if key in _SENDERS_WORD:
                if value != mine.get(key):
                    difference[key] = value
                continue
            rest = _split(value, mine[key]) if key in mine else value
            if rest is not None:
                difference[key] = rest
        if difference:
            found[url] = difference
    return found


def merged(entries: list[Resource], sent: Mapping[str, Resource], known: Mapping[str, str]) -> None:
    """Merge the kept elements into the transaction ``entries``, in place.

    ``known``: each record the contract holds, identity fullUrl → how a reference from this
    Bundle names it: the fullUrl itself when the record is an entry, else a conditional
    reference the server resolves. A kept reference to a record not known is dropped.
    """
    for entry in entries:
        elements = sent.get(str(entry.get("fullUrl")))
        if not elements:
            continue
        resource = entry["resource"]
        for key, value in elements.items():
            resolved = _resolved(value, known)
            if resolved is None:
                continue
            if key == "text" or key in _SENDERS_WORD or key not in resource:
                resource[key] = resolved
            else:
                resource[key] = _merge(resource[key], resolved)


def record(resource: Resource, identifier: Resource, identity_of: Mapping[str, str]) -> Resource:
    """A sent record that is none of the contract's parts, kept whole under our ``identifier``
    (first, the sender's after it); its references to the contract's records canonical."""
    body = {k: v for k, v in _canonical(resource, identity_of).items() if k not in ("id", "meta")}
    theirs = [i for i in body.get("identifier", []) if not _ours(i)]
    return {**body, "identifier": [identifier, *theirs]}


def is_record(elements: Resource) -> bool:
    """Whether these kept elements are a whole record rather than what a part adds."""
    return "resourceType" in elements


def carried_over(sent: Mapping[str, Resource]) -> Sent:
    """What stays of ``sent`` when the contract is changed elsewhere (the JSON facade): all
    but the sender's narratives, which told of the contents as they were."""
    return {
        url: rest
        for url, elements in sent.items()
        if (rest := {k: v for k, v in elements.items() if k != "text"})
    }


def _obj(value: Any) -> Resource:
    return value if isinstance(value, dict) else {}


def _canonical(value: Any, identity_of: Mapping[str, str]) -> Any:
    """``value`` with references to the contract's records as their identity fullUrls."""
    if isinstance(value, list):
        return [_canonical(v, identity_of) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _canonical(v, identity_of) for k, v in value.items()}
    reference = value.get("reference")
    if isinstance(reference, str):
        identity = identity_of.get(reference.split("/_history/")[0])
        if identity is not None:
            out["reference"] = identity
    return out


def _identity(item: Any) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    for keys in _MATCHED_BY:
        if all(k in item for k in keys):
            return ",".join(keys), json.dumps([item[k] for k in keys], sort_keys=True)
    return None


def _split(sent: Any, ours: Any) -> Any:
    """What ``sent`` holds that ``ours`` does not; None when nothing."""
    if isinstance(sent, dict) and isinstance(ours, dict):
        rest: Resource = {}
        for key, value in sent.items():
            part = _split(value, ours[key]) if key in ours else value
            if part is not None:
                rest[key] = part
        return rest or None
    if isinstance(sent, list) and isinstance(ours, list):
        items: list[Any] = []
        for item in sent:
            if _ours(item) or any(_contains(mine, item) for mine in ours):
                continue
            identity = _identity(item)
            twin = next((m for m in ours if identity and _identity(m) == identity), None)
            if twin is None:
                items.append(item)
                continue
            part = _split(item, twin)
            if part is not None:
                assert identity is not None
                named = {k: item[k] for k in identity[0].split(",")}
                items.append({**named, **part})
        return items or None
    if isinstance(sent, str) and isinstance(ours, str) and _refines(sent, ours):
        return sent
    # The same value, or one the contract holds otherwise: the contract's says it.
    return None


def _refines(sent: str, ours: str) -> bool:
    """Whether ``sent`` is a time on the day ``ours`` is: the contract holds dates where FHIR
    has dateTimes, and the sender's time stays while the day is the contract's."""
    return bool(_DATE.fullmatch(ours)) and sent.startswith(f"{ours}T")


def _ours(item: Any) -> bool:
    """An extension, identifier or coding of ours: what it says, the contract holds (a stale
    one a client sent back is replaced, never kept beside the contract's)."""
    if not isinstance(item, dict):
        return False
    named = item.get("url", item.get("system"))
    return isinstance(named, str) and named.startswith(urls.BASE)


def _contains(whole: Any, part: Any) -> bool:
    """Whether everything in ``part`` is in ``whole`` with the same values."""
    if isinstance(whole, dict) and isinstance(part, dict):
        return all(k in whole and _contains(whole[k], v) for k, v in part.items())
    if isinstance(whole, list) and isinstance(part, list):
        return all(any(_contains(w, p) for w in whole) for p in part)
    return bool(whole == part)


def _merge(ours: Any, kept_: Any) -> Any:
    if isinstance(ours, dict) and isinstance(kept_, dict):
        out = dict(ours)
        for key, value in kept_.items():
            out[key] = _merge(out[key], value) if key in out else value
        return out
    if isinstance(ours, list) and isinstance(kept_, list):
        out_items = list(ours)
        for item in kept_:
            identity = _identity(item)
            at = next(
                (i for i, m in enumerate(out_items) if identity and _identity(m) == identity),
                None,
            )
            if at is not None:
                out_items[at] = _merge(out_items[at], item)
            elif item not in out_items:
                out_items.append(item)
        return out_items
    if isinstance(ours, str) and isinstance(kept_, str) and _refines(kept_, ours):
        return kept_
    return ours


def _resolved(value: Any, known: Mapping[str, str]) -> Any:
    """``value`` with identity references as the Bundle names the records; None when what it
    is about is a record the contract no longer holds."""
    if isinstance(value, list):
        items = [_resolved(v, known) for v in value]
        kept_items = [v for v in items if v is not None]
        return kept_items or None
    if not isinstance(value, dict):
        return value
    reference = value.get("reference")
    if isinstance(reference, str) and reference.startswith("urn:uuid:"):
        if reference not in known:
            return None
        value = {**value, "reference": known[reference]}
    out: Resource = {}
    for key, member in value.items():
        resolved = _resolved(member, known)
        if resolved is None:
            if key in _REFERRERS:
                return None
            continue
        out[key] = resolved
    return out or None
