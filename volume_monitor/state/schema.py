"""The state store's tables, as SQLAlchemy Core objects for the queries. The database schema
itself is created and changed by the Alembic migrations in ``migrations/versions``; these
definitions mirror the head revision (a test checks they agree)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Insert

# The Alembic version table. Not Alembic's default ``alembic_version``: a PostgreSQL schema
# shared with another Alembic-managed application (MLflow's tracking store is one) already has
# that table, and the two would break each other.
VERSION_TABLE = "volume_monitor_alembic_version"

metadata = MetaData()

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(100), nullable=False),
    Column("key", Text, nullable=False),
    UniqueConstraint("monitor", "key", name="uq_series_monitor_key"),
)

daily_counts = Table(
    "daily_counts",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id"), primary_key=True),
    Column("date", Date, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("expected_low", Float),
    Column("expected_high", Float),
    Column("score", Float),
    Column("is_anomaly", Boolean),
    Column("direction", String(16)),
    Column("cause", String(32)),
    Column("source", String(16), nullable=False),
    sqlite_with_rowid=False,
)

# The columns of daily_counts that a frame may carry besides date, dimensions and count.
OPTIONAL_COUNT_COLUMNS = (
    "expected_low",
    "expected_high",
    "score",
    "is_anomaly",
    "direction",
    "cause",
)

scored_days = Table(
    "scored_days",
    metadata,
    Column("monitor", String(100), primary_key=True),
    Column("date", Date, primary_key=True),
    Column("scored_at", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("model_uri", Text),
    Column("model_version", String(32)),
    Column("run_id", String(64)),
    Column("rows", Integer, nullable=False),
    Column("anomalies", Integer, nullable=False),
    Column("alert", Boolean, nullable=False),
    Column("missing_day", Boolean, nullable=False),
    Column("summary", Text, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(100), nullable=False),
    Column("date", Date, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("payload", Text),
    Column("model_version", String(32)),
    Column("created_at", String(40), nullable=False),
    Column("sent_at", String(40)),
    UniqueConstraint("monitor", "date", "channel", "kind", name="uq_deliveries_key"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(100), nullable=False),
    Column("date", Date, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("note", Text),
    Column("author", String(100)),
    Column("created_at", String(40), nullable=False),
    Column("matchers", Text, nullable=False, server_default="{}"),  # JSON: dimension -> value
    Index("ix_feedback_monitor_date", "monitor", "date"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(100), nullable=False),
    Column("matchers", Text, nullable=False),
    Column("until", Date, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(100)),
    Column("created_at", String(40), nullable=False),
    Column("expired_at", String(40)),
    Index("ix_silences_monitor", "monitor"),
)


def insert_for(bind: Connection | Engine, table: Table) -> Insert:
    """An INSERT into ``table`` in the dialect of ``bind``, with ``on_conflict_do_*`` (SQLite
    and PostgreSQL alike)."""
    if bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
