"""Work in flight and who does it: instances' heartbeats, the owners of running keys and of audit
records whose outcome is not known yet.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    """Add the instances table and the owner columns."""
    op.create_table(
        "instances",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("idempotency_keys", sa.Column("owner", sa.String(36), nullable=True))
    op.add_column("audit_records", sa.Column("owner", sa.String(36), nullable=True))
    op.create_index("ix_audit_records_owner", "audit_records", ["owner"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_audit_records_owner", table_name="audit_records")
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("owner")
    op.drop_table("instances")
