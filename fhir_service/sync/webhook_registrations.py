"""Webhook registrations: where EHRs want changes sent, checked and kept in the service DB.

A registration names a URL, a secret the deliveries are signed with, and optionally a patient or
a care unit whose contracts it cares about. It also keeps who registered it (its owner, the only
caller who sees it) and the reach of the owner's token: the patient or the responsible care unit
whose contracts the token could read. Deliveries never leave that reach, whatever the filters say,
and a registration without an owner (one made before owners were kept) gets nothing.

Targets are checked when registered: ``https`` (plain ``http`` only when allowed), no
credentials or fragment in the URL, and a host the allowed-host policy admits; unless the policy
allows private networks, the host is resolved and refused if it does not resolve or if any of its
addresses is loopback, private or otherwise not public (:mod:`fhir_service.sync.webhook_targets`,
which checks every delivery's connection again).
"""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from fhir_service.errors import UnprocessableError
from fhir_service.servicedb.tables import Delivery, Webhook
from fhir_service.sync.webhook_targets import (
    IPAddress,
    RefusedTargetError,
    Resolver,
    admitted_addresses,
    canonical_host,
    system_resolver,
)

__all__ = [
    "InvalidWebhookError",
    "Reach",
    "Registration",
    "TargetPolicy",
    "WebhookRegistry",
]

_MIN_SECRET = 24


class InvalidWebhookError(UnprocessableError, ValueError):
    """The registration cannot be accepted; the message says why, for the client."""

    title = "Invalid webhook"


@dataclass(frozen=True)
class TargetPolicy:
    """Which webhook targets the service may call.

    ``allowed_hosts`` holds host patterns (``*.region.example``); empty admits any host that
    passes the other checks. Unless ``allow_private_networks``, the host is resolved with
    ``resolver`` and every address must be public, so that a registration cannot aim the service
    at its neighbours; with it, no address is refused and nothing is looked up.
    """

    allowed_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    allow_private_networks: bool = False
    resolver: Resolver = system_resolver

    def check(self, url: str) -> str:
        """Return ``url`` if it is an acceptable target; :class:`InvalidWebhookError` if not."""
        if len(url) > 2000:
            raise InvalidWebhookError("the URL is longer than 2000 characters")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise InvalidWebhookError(f"the URL is not valid: {exc}") from exc
        if parts.scheme not in ("https", "http"):
            raise InvalidWebhookError("the URL must start with https://")
        if parts.scheme == "http" and not self.allow_http:
            raise InvalidWebhookError("the URL must use https; plain http is not allowed here")
        if parts.username is not None or parts.password is not None:
            raise InvalidWebhookError(
                "the URL must not carry credentials; deliveries are signed with the secret"
            )
        if parts.fragment:
            raise InvalidWebhookError("the URL must not have a fragment")
        try:
            host = canonical_host(parts.hostname or "")
        except RefusedTargetError as exc:
            raise InvalidWebhookError(str(exc)) from exc
        if not host:
            raise InvalidWebhookError("the URL has no host")
        try:
            # A URL httpx cannot send would fail every delivery: better refused now.
            httpx.URL(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except (httpx.InvalidURL, ValueError) as exc:
            raise InvalidWebhookError(f"the URL is not valid: {exc}") from exc
        if not self.allow_private_networks:
            self._check_addresses(host, port)
        self._check_allowed(host)
        return url

    def _check_addresses(self, host: str, port: int) -> None:
        try:
            admitted_addresses(host, port, allow_private_networks=False, resolver=self._lookup)
        except RefusedTargetError as exc:
            raise InvalidWebhookError(str(exc)) from exc
        except (OSError, UnicodeError) as exc:
            raise InvalidWebhookError(
                f"host {host!r} does not resolve to an address; a webhook needs a name this"
                " service can look up"
            ) from exc

    def _lookup(self, name: str, port: int) -> Sequence[IPAddress]:
        # Nobody is asked about a name the allowed hosts leave out.
        self._check_allowed(name)
        return self.resolver(name, port)

    def _check_allowed(self, host: str) -> None:
        if self.allowed_hosts and not any(fnmatch.fnmatch(host, p) for p in self.allowed_hosts):
            raise InvalidWebhookError(f"host {host!r} is not among the allowed webhook hosts")


@dataclass(frozen=True)
class Reach:
    """Whose contracts the registrant's token reaches: a patient's, a care unit's, or (both None)
    everyone's. Identifiers are ``system|value`` tokens.
    """

    patient: str | None = None
    responsible_unit: str | None = None

    def covers(self, patients: frozenset[str], responsible_unit: str | None) -> bool:
        """Whether a contract of these patients, held by this unit, lies within the reach."""
        if self.patient is not None and self.patient not in patients:
            return False
        return self.responsible_unit is None or self.responsible_unit == responsible_unit


@dataclass(frozen=True)
class Registration:
    """A webhook as the API shows it: everything but the secret."""

    id: str
    url: str
    patient_identifier: str | None
    care_unit: str | None
    description: str | None
    created_at: datetime
    owner: str | None = None
    reach: Reach = Reach()

    def wants(
        self,
        patients: frozenset[str],
        care_units: frozenset[str],
        responsible_unit: str | None = None,
    ) -> bool:
        """Whether a change touching these patients and care units is for this webhook.

        ``responsible_unit`` is the care unit responsible for the changed contract, which is
        what a care unit's reach is about; ``care_units`` are all the units taking part in it.
        """
        if self.owner is None or not self.reach.covers(patients, responsible_unit):
            return False
        if self.patient_identifier is not None and self.patient_identifier not in patients:
            return False
        return self.care_unit is None or self.care_unit in care_units


class WebhookRegistry:
    """Register, list and remove webhooks; the calls block (run them in a thread)."""

    def __init__(self, engine: Engine, policy: TargetPolicy) -> None:
        self.engine = engine
        self.policy = policy

    def register(
        self,
        url: str,
        secret: str,
        *,
        owner: str,
        reach: Reach,
        patient_identifier: str | None = None,
        care_unit: str | None = None,
        description: str | None = None,
    ) -> Registration:
        """Check and store ``owner``'s webhook; filters are ``system|value`` identifier tokens."""
        self.policy.check(url)
        if len(secret) < _MIN_SECRET or len(secret) > 200:
            raise InvalidWebhookError(
                f"the secret must be {_MIN_SECRET} to 200 characters long; use a random one"
            )
        tokens = (
            ("patient", patient_identifier),
            ("careUnit", care_unit),
            ("reach", reach.patient),
            ("reach", reach.responsible_unit),
        )
        for name, token in tokens:
            if token is not None and not _is_token(token):
                raise InvalidWebhookError(f"{name} must be an identifier as 'system|value'")
        row = Webhook(
            id=str(uuid.uuid4()),
            url=url,
            secret=secret,
            patient_identifier=patient_identifier,
            care_unit=care_unit,
            description=description,
            created_at=datetime.now(UTC),
            owner=owner,
            reach_patient=reach.patient,
            reach_unit=reach.responsible_unit,
        )
        with Session(self.engine) as session, session.begin():
            session.add(row)
            return _registration(row)

    def list(self, owner: str | None = None) -> list[Registration]:
        """Every webhook, or every one of ``owner``'s, oldest first."""
        query = select(Webhook).order_by(Webhook.created_at, Webhook.id)
        if owner is not None:
            query = query.where(Webhook.owner == owner)
        with Session(self.engine) as session:
            return [_registration(row) for row in session.scalars(query)]

    def get(self, webhook_id: str, owner: str | None = None) -> Registration | None:
        """One webhook (only if ``owner``'s, when given), or None."""
        with Session(self.engine) as session:
            row = session.get(Webhook, webhook_id)
            if row is None or (owner is not None and row.owner != owner):
                return None
            return _registration(row)

    def remove(self, webhook_id: str, owner: str | None = None) -> bool:
        """Remove a webhook (only if ``owner``'s, when given) and its pending deliveries.

        False if there was none to remove.
        """
        with Session(self.engine) as session, session.begin():
            row = session.get(Webhook, webhook_id)
            if row is None or (owner is not None and row.owner != owner):
                return False
            # Deliveries go explicitly: SQLite enforces ON DELETE CASCADE only when asked to.
            session.execute(delete(Delivery).where(Delivery.webhook_id == webhook_id))
            session.delete(row)
            return True


def _registration(row: Webhook) -> Registration:
    return Registration(
        id=row.id,
        url=row.url,
        patient_identifier=row.patient_identifier,
        care_unit=row.care_unit,
        description=row.description,
        created_at=row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
        owner=row.owner,
        reach=Reach(patient=row.reach_patient, responsible_unit=row.reach_unit),
    )


def _is_token(token: str) -> bool:
    system, sep, value = token.partition("|")
    return bool(sep and system and value and "|" not in value and len(token) <= 300)
