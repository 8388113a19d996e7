"""A write's transaction Bundle made to name the records a read just found by their ids.

A contract's records name records many contracts share (the patient, the care unit and its
HealthcareService, the professionals and their PractitionerRoles), which the mapping writes as
conditional creates: nothing happens when the record exists, but HAPI searches for it all the
same, one search per record per write. When the contract was just read, its search Bundle
holds those records with their ids. `resolved` leaves out the conditional create of each record
the read found (the same type, with the identifier the create searches by), names that record
by its id wherever the transaction named the entry (or named it by a conditional reference,
``Practitioner?identifier=...``, which HAPI would search for too), and leaves out what no entry
names any more (the unit's Organization, once its HealthcareService is named by id). The
contract's own records, written by a conditional update (``PUT Goal?identifier=...``), are
written by id (``PUT Goal/<id>``) when the read found them. A record the read did not find keeps
its conditional create or update: resolving is only ever a saving.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_service.mapping.elements import references

__all__ = ["resolved"]

Resource = dict[str, Any]


def resolved(bundle: Resource, stored: Iterable[Resource]) -> Resource:
    """``bundle`` naming each record of ``stored`` it would conditionally create by its id."""
    ids = {
        (str(r["resourceType"]), f"identifier={i.get('system')}|{i.get('value')}"): (
            f"{r['resourceType']}/{r['id']}"
        )
        for r in stored
        if r.get("id")
        for i in r.get("identifier", [])
        if isinstance(i, dict)
    }
    # Conditional references resolve as the creates do.
    named = {f"{kind}?{criteria}": found for (kind, criteria), found in ids.items()}
    kept = []
    for entry in bundle.get("entry", []):
        found = ids.get(_created_if_absent(entry) or ("", ""))
        if found is not None:
            named[str(entry["fullUrl"])] = found
            continue
        request = entry.get("request", {})
        by_id = named.get(str(request.get("url"))) if request.get("method") == "PUT" else None
        if by_id is not None:
            resource = {**entry["resource"], "id": by_id.split("/")[1]}
            entry = {**entry, "resource": resource, "request": {**request, "url": by_id}}
        kept.append(entry)
    kept = [_renamed(entry, named) for entry in kept]
    while True:
        mentioned = {ref for entry in kept for ref in references(entry.get("resource"))}
        unnamed = [
            e for e in kept if _created_if_absent(e) is not None and e["fullUrl"] not in mentioned
        ]
        if not unnamed:
            return {**bundle, "entry": kept}
        kept = [e for e in kept if e not in unnamed]


def _created_if_absent(entry: Resource) -> tuple[str, str] | None:
    """(type, criteria) of a conditional create by one identifier; None for any other entry."""
    request = entry.get("request", {})
    criteria = request.get("ifNoneExist")
    if request.get("method") != "POST" or not isinstance(criteria, str) or "&" in criteria:
        return None
    if not criteria.startswith("identifier=") or not str(entry.get("fullUrl", "")).startswith(
        "urn:"
    ):
        return None
    return str(request.get("url")), criteria


def _renamed(value: Any, named: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: named.get(v, v) if k == "reference" and isinstance(v, str) else _renamed(v, named)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamed(v, named) for v in value]
    return value
