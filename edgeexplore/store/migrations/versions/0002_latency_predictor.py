"""The learned latency predictor's table (issue 15).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "latency_predictors",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("device_fingerprint", sa.String(16), nullable=False),
        sa.Column("device", sa.Text(), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("archs", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("backend", "settings", "batch", "device_fingerprint",
                            name="uq_latency_predictor"),
    )


def downgrade() -> None:
    op.drop_table("latency_predictors")
