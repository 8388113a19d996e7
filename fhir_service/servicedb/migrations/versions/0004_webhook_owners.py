"""Webhook owners and reach: who registered a webhook and whose contracts it may hear of.

Webhooks registered before this revision keep no owner, and get no deliveries until registered
again by a caller whose token says whose contracts it reaches.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    """Add the owner and reach columns to the webhooks."""
    op.add_column("webhooks", sa.Column("owner", sa.String(64), nullable=True))
    op.add_column("webhooks", sa.Column("reach_patient", sa.String(300), nullable=True))
    op.add_column("webhooks", sa.Column("reach_unit", sa.String(300), nullable=True))
    op.create_index("ix_webhooks_owner", "webhooks", ["owner"])


def downgrade() -> None:
    """Drop the owner and reach columns."""
    op.drop_index("ix_webhooks_owner", table_name="webhooks")
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("reach_unit")
        batch.drop_column("reach_patient")
        batch.drop_column("owner")
