"""The audit outbox: AuditEvents waiting to be written to HAPI.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    """Create the audit outbox table."""
    op.create_table(
        "audit_records",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
    )
    op.create_index("ix_audit_records_next_attempt_at", "audit_records", ["next_attempt_at"])
    op.create_index("ix_audit_records_written_at", "audit_records", ["written_at"])


def downgrade() -> None:
    """Drop the audit outbox table."""
    op.drop_index("ix_audit_records_written_at", table_name="audit_records")
    op.drop_index("ix_audit_records_next_attempt_at", table_name="audit_records")
    op.drop_table("audit_records")
