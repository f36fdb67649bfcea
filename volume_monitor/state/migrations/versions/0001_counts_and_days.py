"""The first state schema: series, their daily counts, and the scored days.

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(100), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.UniqueConstraint("monitor", "key", name="uq_series_monitor_key"),
    )
    op.create_table(
        "daily_counts",
        sa.Column(
            "series_id", sa.Integer, sa.ForeignKey("series.id", name="fk_daily_counts_series")
        ),
        sa.Column("date", sa.Date),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("expected_low", sa.Float),
        sa.Column("expected_high", sa.Float),
        sa.Column("score", sa.Float),
        sa.Column("is_anomaly", sa.Boolean),
        sa.Column("direction", sa.String(16)),
        sa.Column("cause", sa.String(32)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("series_id", "date", name="pk_daily_counts"),
        sqlite_with_rowid=False,  # rows clustered by series and day: half the file, faster
    )
    op.create_table(
        "scored_days",
        sa.Column("monitor", sa.String(100)),
        sa.Column("date", sa.Date),
        sa.Column("scored_at", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model_uri", sa.Text),
        sa.Column("model_version", sa.String(32)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("anomalies", sa.Integer, nullable=False),
        sa.Column("alert", sa.Boolean, nullable=False),
        sa.Column("missing_day", sa.Boolean, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("monitor", "date", name="pk_scored_days"),
    )


def downgrade() -> None:
    op.drop_table("scored_days")
    op.drop_table("daily_counts")
    op.drop_table("series")
