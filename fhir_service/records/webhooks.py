"""The caller's webhooks: `CallerWebhooks`, bound once per request.

A webhook belongs to the caller who registered it: others neither see nor remove it. It hears
only of contracts the registering token could read (its patient's, or those its care unit is
responsible for); a filter naming another patient is refused rather than accepted to stay
silent.
"""

from __future__ import annotations

import asyncio

from fhir_service.audit.witness import Witness
from fhir_service.contract import Identifier, IdentifierKind
from fhir_service.errors import RecordNotFoundError
from fhir_service.mapping.identifier_systems import system_of
from fhir_service.security.access import Access, AccessDeniedError, Denial
from fhir_service.sync.webhook_registrations import (
    InvalidWebhookError,
    Reach,
    Registration,
    WebhookRegistry,
)
from fhir_service.write_gate import before_write

__all__ = ["CallerWebhooks"]

_ORGANIZATION_KINDS = frozenset({IdentifierKind.HSA_ID, IdentifierKind.ORGANISASJONSNUMMER})


class CallerWebhooks:
    """One request's caller's webhooks; ``owner`` is the caller as the registry knows them."""

    def __init__(
        self, access: Access, witness: Witness, owner: str, registry: WebhookRegistry
    ) -> None:
        self.access = access
        self.witness = witness
        self.owner = owner
        self.registry = registry

    async def register(
        self,
        url: str,
        secret: str,
        *,
        patient: Identifier | None,
        care_unit: Identifier | None,
        description: str | None,
    ) -> Registration:
        """Register a webhook that hears of the contracts the caller's token reaches, and of
        those only of ``patient`` or ``care_unit`` when given."""
        if patient is not None and patient.kind in _ORGANIZATION_KINDS:
            raise InvalidWebhookError(
                "patient must be a patient's identifier, not an organization's"
            )
        if care_unit is not None and care_unit.kind not in _ORGANIZATION_KINDS:
            raise InvalidWebhookError(
                "careUnit must be an organization's HSA-id or organisasjonsnummer"
            )
        walls = self.access.compartment
        if walls.patient is not None and patient not in (None, walls.patient):
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise AccessDeniedError(Denial.OUTSIDE_COMPARTMENT)
        reach = Reach(patient=_token(walls.patient), responsible_unit=_token(walls.organization))
        await before_write()
        return await asyncio.to_thread(
            self.registry.register,
            url,
            secret,
            owner=self.owner,
            reach=reach,
            patient_identifier=_token(patient),
            care_unit=_token(care_unit),
            description=description,
        )

    async def all(self) -> list[Registration]:
        """Every webhook the caller registered, oldest first."""
        return await asyncio.to_thread(self.registry.list, self.owner)

    async def get(self, webhook_id: str) -> Registration:
        """One of the caller's webhooks."""
        found = await asyncio.to_thread(self.registry.get, webhook_id, self.owner)
        if found is None:
            raise RecordNotFoundError(f"no webhook {webhook_id!r}")
        return found

    async def remove(self, webhook_id: str) -> None:
        """Remove one of the caller's webhooks, and its undelivered events with it."""
        await before_write()
        if not await asyncio.to_thread(self.registry.remove, webhook_id, self.owner):
            raise RecordNotFoundError(f"no webhook {webhook_id!r}")


def _token(identifier: Identifier | None) -> str | None:
    return None if identifier is None else f"{system_of(identifier)}|{identifier.value}"
