"""trial_latency: whether each trial's latency was measured or predicted (issue 15).

Every trial stored before this revision with a latency had it from its backend, so each gets a
``measured`` row.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trial_latency",
        sa.Column("trial_id", sa.Integer(),
                  sa.ForeignKey("trial_results.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("predicted_ms", sa.Float()),
        sa.Column("predictor_error", sa.Float()),
        sa.Column("predictor_mape", sa.Float()),
        sa.Column("predictor_within10", sa.Float()),
        sa.Column("predictor_n", sa.Integer()),
        sa.Column("predictor_method", sa.String(32)),
    )
    op.create_index("ix_trial_latency_source", "trial_latency", ["source"])
    op.execute("INSERT INTO trial_latency (trial_id, source) SELECT id, 'measured' "
               "FROM trial_results WHERE latency_ms IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_trial_latency_source", "trial_latency")
    op.drop_table("trial_latency")
