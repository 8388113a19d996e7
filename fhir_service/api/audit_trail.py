"""The audit trail of one request: filled while it runs, turned into one `AccessRecord` at the end.

The security middleware opens a trail for every request to a protected route and records it
when the answer is known; routes only add what they touched (`AuditTrail.saw_contract`), so the
record names the patients and contracts even of a refused or failed request.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus

from starlette.requests import Request

from fhir_service.api.access_rules import Protected
from fhir_service.audit import (
    AccessRecord,
    Caller,
    FhirIdentifier,
    Outcome,
    Touched,
    contract_entities,
)
from fhir_service.contract import Contract
from fhir_service.mapping import Author
from fhir_service.security import Access
from fhir_service.store import Change

__all__ = ["TRAIL_STATE", "AuditTrail", "change_by", "refused_in"]

TRAIL_STATE = "audit_trail"
"""Where on ``request.state`` the security middleware leaves the request's trail."""


@dataclass
class AuditTrail:
    """What one request to a protected route was, who made it, and what it touched."""

    rule: Protected
    request_id: str
    method: str
    route: str
    caller: Caller
    query: str | None = None
    denial: str | None = None
    """Why the request was refused, when it was refused by the security layer or a route."""
    patients: list[FhirIdentifier] = field(default_factory=list)
    entities: list[Touched] = field(default_factory=list)
    write_key: str | None = None
    """A tag naming the request's ``Idempotency-Key`` (with its caller and route, hashed), put on
    the Provenance of what it writes, so that a retry can find out whether it wrote."""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """The record's id, the same when it is opened and when it is completed."""

    def saw_contract(self, contract: Contract) -> None:
        """The request read, wrote or was refused ``contract``."""
        patient, entity = contract_entities(contract)
        if patient not in self.patients:
            self.patients.append(patient)
        if entity not in self.entities:
            self.entities.append(entity)

    def saw(self, entity: Touched, patients: Iterable[FhirIdentifier] = ()) -> None:
        """The request read, wrote or was refused ``entity``, which is about ``patients``."""
        for patient in patients:
            if patient not in self.patients:
                self.patients.append(patient)
        if entity not in self.entities:
            self.entities.append(entity)

    def refused(self, reason: str) -> None:
        """The request was refused for ``reason`` (safe to record, quotes nothing secret)."""
        self.denial = reason

    def opened(self, now: datetime | None = None) -> AccessRecord:
        """The audit record of this request before it runs: the outcome is not known yet, and
        stays unknown if the service dies before answering."""
        requirement = self.rule.requirement
        action = self.rule.operation or self.rule.interaction.value
        text = f"{action} {requirement.resource_type}: outcome unknown, no answer was given"
        return self._record(None, text, now)

    def record(self, status: int, now: datetime | None = None) -> AccessRecord:
        """The audit record of this request, answered with ``status``."""
        if status >= 500:
            outcome = Outcome.SERIOUS_FAILURE
        elif status >= 400:
            outcome = Outcome.MINOR_FAILURE
        else:
            outcome = Outcome.SUCCESS
        return self._record(outcome, self._description(status), now)

    def _record(
        self, outcome: Outcome | None, description: str, now: datetime | None
    ) -> AccessRecord:
        return AccessRecord(
            id=self.id,
            recorded=now or datetime.now(UTC),
            interaction=self.rule.interaction,
            outcome=outcome,
            description=description,
            caller=self.caller,
            request_id=self.request_id,
            method=self.method,
            route=self.route,
            patients=tuple(self.patients),
            entities=tuple(self.entities),
            query=self.query,
            operation=self.rule.operation,
        )

    def _description(self, status: int) -> str:
        requirement = self.rule.requirement
        action = self.rule.operation or self.rule.interaction.value
        text = f"{action} {requirement.resource_type}: {status} {_phrase(status)}"
        return f"{text}; {self.denial}" if self.denial else text


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def change_by(access: Access, trail: AuditTrail) -> Change:
    """The change a request makes: its author, as the Provenance names them, and their walls."""
    caller = trail.caller
    user = (caller.issuer or "", caller.subject or access.principal.subject)
    author = Author(user, caller.client_id, caller.organization, caller.patient, trail.write_key)
    return Change(author, access.compartment)


def refused_in(request: Request, reason: str) -> None:
    """Tell the audit record of ``request`` (if it has one: a protected route) why it was
    refused; a reason already given stays."""
    trail = getattr(request.state, TRAIL_STATE, None)
    if isinstance(trail, AuditTrail) and trail.denial is None:
        trail.refused(reason)
