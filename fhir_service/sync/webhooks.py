"""Webhook registrations: where EHRs want changes sent, checked and kept in the service DB.

A registration names a URL, a secret the deliveries are signed with, and optionally a patient or
a care unit whose contracts it cares about. It also keeps who registered it (its owner, the only
caller who sees it) and the reach of the owner's token: the patient or the responsible care unit
whose contracts the token could read. Deliveries never leave that reach, whatever the filters say,
and a registration without an owner (one made before owners were kept) gets nothing.

Targets are checked when registered: ``https`` (plain ``http`` only when allowed), no
credentials or fragment in the URL, and a host the allowed-host policy admits; loopback and
private addresses are refused unless the policy allows them.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from fhir_service.sync.tables import Delivery, Webhook

__all__ = [
    "InvalidWebhookError",
    "Reach",
    "Registration",
    "TargetPolicy",
    "WebhookRegistry",
]

_MIN_SECRET = 24


class InvalidWebhookError(ValueError):
    """The registration cannot be accepted; the message says why, for the client."""


@dataclass(frozen=True)
class TargetPolicy:
    """Which webhook targets the service may call.

    ``allowed_hosts`` holds host patterns (``*.region.example``); empty admits any host that
    passes the other checks. Private, loopback and link-local addresses are refused unless
    ``allow_private_networks``, so that a registration cannot aim the service at its neighbours.
    """

    allowed_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    allow_private_networks: bool = False

    def check(self, url: str) -> str:
        """Return ``url`` if it is an acceptable target; :class:`InvalidWebhookError` if not."""
        if len(url) > 2000:
            raise InvalidWebhookError("the URL is longer than 2000 characters")
        parts = urlsplit(url)
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
        host = (parts.hostname or "").lower()
        if not host:
            raise InvalidWebhookError("the URL has no host")
        if not self.allow_private_networks and _is_private(host):
            raise InvalidWebhookError(f"host {host!r} is a local or private address")
        if self.allowed_hosts and not any(fnmatch.fnmatch(host, p) for p in self.allowed_hosts):
            raise InvalidWebhookError(f"host {host!r} is not among the allowed webhook hosts")
        return url


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


def _is_private(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )
