"""training_claims: one row per training in progress, so concurrent workers train an
architecture with a given training key once (edgeexplore.store.claims).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_claims",
        sa.Column("arch_hash", sa.String(16), primary_key=True),
        sa.Column("train_key", sa.String(16), primary_key=True),
        sa.Column("hostname", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("training_claims")
