"""Contract search criteria as HAPI query parameters, and the cursors that page through them.

Pure functions: every criterion is checked here, so a bad search is refused before HAPI is
asked. The custom SearchParameters used are in ``profiles/searchparameters/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from fhir_service.contract import ContractStatus, Identifier, IdentifierKind
from fhir_service.contract.identifiers import normalize
from fhir_service.errors import InvalidRequestError
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.mapping.tables import code_table

__all__ = [
    "UNIT_OF_CONTRACT",
    "IdentifierQuery",
    "InvalidSearchError",
    "contract_id_of",
    "criteria",
    "cursor_for",
    "offset_of",
]

UNIT_OF_CONTRACT = "responsible-unit.identifier"
"""profiles/searchparameters/careplan-responsible-unit.json: the unit a contract is of, named
on every contract, also one that names no responsible clinician."""

IdentifierQuery = Identifier | tuple[str, str]
"""A national identifier to search by: an :class:`Identifier`, or ``(kind, value)`` to check."""

# Which kinds identify what, as in the contract model (fhir_service/contract/model.py).
_KINDS: dict[str, tuple[str, frozenset[IdentifierKind]]] = {
    "patient": (
        "a patient",
        frozenset(
            {
                IdentifierKind.PERSONNUMMER,
                IdentifierKind.SAMORDNINGSNUMMER,
                IdentifierKind.FODSELSNUMMER,
                IdentifierKind.D_NUMMER,
            }
        ),
    ),
    "care_unit": (
        "a care unit",
        frozenset({IdentifierKind.HSA_ID, IdentifierKind.ORGANISASJONSNUMMER}),
    ),
    "care_contact": (
        "a professional",
        frozenset({IdentifierKind.HSA_ID, IdentifierKind.HPR_NUMMER}),
    ),
}


class InvalidSearchError(InvalidRequestError, ValueError):
    """A search that cannot be asked: a bad identifier or status, an empty period, a bad cursor."""

    title = "Invalid search"


def criteria(
    patient: IdentifierQuery | None,
    status: str | Iterable[str] | None,
    care_unit: IdentifierQuery | None,
    care_contact: IdentifierQuery | None,
    period_from: date | None,
    period_to: date | None,
) -> list[tuple[str, str]]:
    """The CarePlan search parameters of a contract search; see ``ContractStore.search``."""
    # Only CarePlans that are contracts: other systems may keep CarePlans in the same HAPI.
    params = [("identifier", f"{urls.ID_CONTRACT}|")]
    if patient is not None:
        params.append(("patient.identifier", _identifier("patient", patient)))
    if status is not None:
        params.append(("contract-status", _statuses(status)))
    if care_unit is not None:
        params.append((UNIT_OF_CONTRACT, _identifier("care_unit", care_unit)))
    if care_contact is not None:
        # profiles/searchparameters/careteam-care-contact.json: only the care-contact member.
        person = _identifier("care_contact", care_contact)
        params.append(("care-team.care-contact.practitioner.identifier", person))
    return params + _period(period_from, period_to)


def _identifier(what: str, value: IdentifierQuery) -> str:
    label, kinds = _KINDS[what]
    if isinstance(value, Identifier):
        kind, canonical = value.kind, value.value
    else:
        name, text = value
        if name not in set(IdentifierKind):
            known = ", ".join(sorted(IdentifierKind))
            raise InvalidSearchError(
                f"{what}: unknown identifier kind {name!r}; use one of {known}"
            )
        kind = IdentifierKind(name)
        try:
            canonical = normalize(kind, text)
        except ValueError as exc:
            raise InvalidSearchError(f"{what}: {exc}") from exc
    if kind not in kinds:
        raise InvalidSearchError(
            f"{what}: a {kind} does not identify {label}; use one of {', '.join(sorted(kinds))}"
        )
    # Our own records carry the system we emit; a valid value holds no , | or \ to escape.
    return f"{system_for(kind)}|{canonical}"


def _statuses(status: str | Iterable[str]) -> str:
    wanted = [status] if isinstance(status, str) else list(status)
    if not wanted:
        raise InvalidSearchError("status: name at least one status")
    codes = []
    for code in wanted:
        if code not in set(ContractStatus):
            known = ", ".join(ContractStatus)
            raise InvalidSearchError(
                f"status: unknown contract status {code!r}; use one of {known}"
            )
        codes.append(ContractStatus(code))
    system = code_table("contract-status").system
    return ",".join(f"{system}|{code}" for code in dict.fromkeys(codes))


def _period(start: date | None, end: date | None) -> list[tuple[str, str]]:
    for name, day in (("period_from", start), ("period_to", end)):
        # A datetime is a date too, but a time of day has no meaning for a contract's period.
        if day is not None and (isinstance(day, datetime) or not isinstance(day, date)):
            raise InvalidSearchError(f"{name}: expected a date, not {day!r}")
    if start is not None and end is not None and end < start:
        raise InvalidSearchError(f"period_from {start} is after period_to {end}: an empty range")
    # FHIR date search on CarePlan.period: "ge" matches a period that ends on or after the day,
    # "le" one that starts on or before it; HAPI indexes a missing end or start as open.
    criteria = []
    if start is not None:
        criteria.append(("date", f"ge{start.isoformat()}"))
    if end is not None:
        criteria.append(("date", f"le{end.isoformat()}"))
    return criteria


def offset_of(cursor: str | None, criteria: list[tuple[str, str]]) -> int:
    """Where ``cursor`` continues the search with ``criteria``; 0 without a cursor."""
    if cursor is None:
        return 0
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        offset, search = state["offset"], state["search"]
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidSearchError("cursor: not a cursor this search gave out") from exc
    if type(offset) is not int or offset < 0:
        raise InvalidSearchError("cursor: not a cursor this search gave out")
    if search != _fingerprint(criteria):
        raise InvalidSearchError("cursor: it belongs to a search with other criteria")
    return offset


def cursor_for(offset: int, criteria: list[tuple[str, str]]) -> str:
    """An opaque cursor continuing the search with ``criteria`` at ``offset``."""
    state = {"offset": offset, "search": _fingerprint(criteria)}
    return base64.urlsafe_b64encode(json.dumps(state).encode("ascii")).decode("ascii")


def _fingerprint(criteria: list[tuple[str, str]]) -> str:
    # Ties a cursor to its criteria, so that it cannot silently skip into another search.
    return hashlib.sha256(json.dumps(criteria).encode("utf-8")).hexdigest()[:16]


def contract_id_of(careplan: dict[str, Any]) -> str:
    """The contract id a contract's CarePlan carries."""
    return next(
        str(i["value"])
        for i in careplan.get("identifier", [])
        if i.get("system") == urls.ID_CONTRACT
    )
