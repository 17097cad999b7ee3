"""The trainings table: full (and longer-proxy) trainings per architecture and spec key.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trainings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("arch_hash", sa.String(16), sa.ForeignKey("architectures.hash"),
                  nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec_key", sa.String(16), nullable=False),
        sa.Column("recipe", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("epochs_done", sa.Integer(), nullable=False),
        sa.Column("best_top1", sa.Float()),
        sa.Column("best_epoch", sa.Integer()),
        sa.Column("final_top1", sa.Float()),
        sa.Column("best_top5", sa.Float()),
        sa.Column("final_top5", sa.Float()),
        sa.Column("checkpoint", sa.Text()),
        sa.Column("output", sa.Text()),
        sa.Column("curve", sa.Text()),
        sa.Column("train_seconds", sa.Float()),
        sa.Column("environment_id", sa.Integer(), sa.ForeignKey("environments.id")),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
    )
    op.create_index("ix_trainings_reuse", "trainings", ["arch_hash", "spec_key", "state"])


def downgrade() -> None:
    op.drop_index("ix_trainings_reuse", "trainings")
    op.drop_table("trainings")
