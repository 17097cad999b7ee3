"""latency_predictors.features: whether a predictor reads the device's unit table (issue 15).

Every predictor stored before this revision was fitted on analytic features only.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("latency_predictors") as batch:
        batch.add_column(sa.Column("features", sa.String(16), nullable=False,
                                   server_default="analytic"))


def downgrade() -> None:
    with op.batch_alter_table("latency_predictors") as batch:
        batch.drop_column("features")
