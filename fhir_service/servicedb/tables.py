"""The service DB's tables: operational state, nothing clinical.

The audit outbox holds patient identifiers (in the AuditEvents) only until HAPI has the events and
housekeeping forgets them a week later.

Changes to these go with a migration in ``fhir_service/servicedb/migrations/versions/``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AuditRecord",
    "Base",
    "Delivery",
    "IdempotencyRecord",
    "Instance",
    "SeenChange",
    "SyncState",
    "Webhook",
]


class Base(DeclarativeBase):
    """Declarative base of the service DB."""


class IdempotencyRecord(Base):
    """One ``Idempotency-Key`` a client sent, what it asked, and the answer it got."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    owner: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The instance running the request while it runs: a dead owner's key is taken over."""


class Webhook(Base):
    """A receiver an EHR registered: where to send changes, how to sign them, which to send."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    patient_identifier: Mapped[str | None] = mapped_column(String(300), nullable=True)
    care_unit: Mapped[str | None] = mapped_column(String(300), nullable=True)
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    """A pseudonymous key of the caller who registered it; only they see it."""
    reach_patient: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """The patient whose contracts the owner's token reached, when it was a patient's."""
    reach_unit: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """The care unit whose contracts the owner's token reached, when it was a unit's."""


class Delivery(Base):
    """One event on its way to one webhook: the durable outbox.

    A row is due when ``next_attempt_at`` has passed and it is not delivered. A worker claims it by
    moving ``next_attempt_at`` a lease ahead, so a worker that dies mid-delivery leaves the row due
    again once the lease runs out; receivers de-duplicate by ``event_id``.
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "delivered_at", "next_attempt_at"),)

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True
    )
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class SeenChange(Base):
    """A resource version already turned into events: each change goes out once.

    Both paths that learn of changes (HAPI's rest-hook and the ``_history`` catch-up) pass through
    this table, so whichever sees a version first makes its events and the other skips it.
    """

    __tablename__ = "seen_changes"

    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SyncState(Base):
    """Small named values shared by every instance: the ``_history`` cursor, the hook token."""

    __tablename__ = "sync_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(500))


class AuditRecord(Base):
    """One AuditEvent on its way into HAPI: the audit outbox.

    A read's row is written when the request it audits is answered and is due at once. A write's
    is opened before the request may reach HAPI, saying its outcome is unknown and owned by the
    instance running it, and completed with the outcome when the answer is known. A writer claims it
    like a delivery (``next_attempt_at`` a lease ahead) and PUTs it under its own id, so a retry
    after a lost answer stores it once. ``written_at`` says HAPI took it.
    """

    __tablename__ = "audit_records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    resource: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    written_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    """Set while the request it audits runs (its outcome is not known yet): the instance
    running it. A dead owner's record goes to HAPI as it is, saying the outcome is unknown."""


class Instance(Base):
    """One running instance of the service, alive while its heartbeat is fresh.

    Work in flight (a running idempotency key, an audit record awaiting its outcome) names the
    instance doing it; when that instance stops beating (killed, or cut off from this database),
    others take its work over instead of waiting for it forever.
    """

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
