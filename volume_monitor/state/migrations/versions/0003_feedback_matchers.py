"""Feedback names the series it is about with dimension matchers (like a silence), not one
series key.

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
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("matchers", sa.Text, nullable=False, server_default="{}"))
        batch.drop_column("series_key")


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("series_key", sa.Text))
        batch.drop_column("matchers")
