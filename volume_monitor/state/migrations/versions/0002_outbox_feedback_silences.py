"""The outbox of deliveries, the feedback people give, and silences.

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
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(100), nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("payload", sa.Text),
        sa.Column("model_version", sa.String(32)),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("sent_at", sa.String(40)),
        sa.UniqueConstraint("monitor", "date", "channel", "kind", name="uq_deliveries_key"),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(100), nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("series_key", sa.Text),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("author", sa.String(100)),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_feedback_monitor_date", "feedback", ["monitor", "date"])
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(100), nullable=False),
        sa.Column("matchers", sa.Text, nullable=False),
        sa.Column("until", sa.Date, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(100)),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("expired_at", sa.String(40)),
    )
    op.create_index("ix_silences_monitor", "silences", ["monitor"])


def downgrade() -> None:
    op.drop_index("ix_silences_monitor", table_name="silences")
    op.drop_table("silences")
    op.drop_index("ix_feedback_monitor_date", table_name="feedback")
    op.drop_table("feedback")
    op.drop_table("deliveries")
