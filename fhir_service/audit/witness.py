"""What a service tells the audit record of the request it serves.

The web layer opens one record per request (`fhir_service.api.audit_trail.AuditTrail`); the
services below it only say what they touched and why they refused, through this protocol, so
that the record names the patients and contracts of every access whichever route made it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from fhir_service.audit.records import FhirIdentifier, Touched
from fhir_service.contract import Contract

__all__ = ["Witness"]


class Witness(Protocol):
    """The audit record of one request, as the services fill it."""

    query: str | None
    """The search asked, when it did not come in the URL (a search posted as a form)."""
    write_key: str | None
    """A tag naming the request's Idempotency-Key, put on the Provenance of what it writes."""

    def saw_contract(self, contract: Contract) -> None:
        """The request read, wrote or was refused ``contract``."""

    def saw(self, entity: Touched, patients: Iterable[FhirIdentifier] = ()) -> None:
        """The request read, wrote or was refused ``entity``, which is about ``patients``."""

    def refused(self, reason: str) -> None:
        """The request was refused for ``reason`` (safe to record, quotes nothing secret)."""
