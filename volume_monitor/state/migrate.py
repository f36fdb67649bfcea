"""The state store's schema revision: a cheap check on every open (one query; Alembic is not
even imported when the store is at head), and the upgrade to head on first use, run under a
lock so two processes opening a fresh store at once upgrade it once.

The lock is the upgrade's own transaction: ``BEGIN IMMEDIATE`` on SQLite (the write lock of
the file) and ``pg_advisory_xact_lock`` on PostgreSQL; the revision is read again once it is
held, and the whole upgrade commits or rolls back as one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from volume_monitor.config import redact_url
from volume_monitor.errors import StateError
from volume_monitor.state.connect import WRITE
from volume_monitor.state.schema import VERSION_TABLE

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revisions this version knows, oldest first; HEAD is the schema it reads and writes.
REVISIONS = ("0001", "0002", "0003")
HEAD = REVISIONS[-1]
PG_LOCK_KEY = 0x766D5F7374617465  # "vm_state": one upgrade at a time per database
READ_VERSION = f"SELECT version_num FROM {VERSION_TABLE}"


def stored_revision(connection: Connection) -> str | None:
    """The revision the store is at; None for an empty store (no version table or no row)."""
    try:
        rows = connection.exec_driver_sql(READ_VERSION).scalars().all()
    except DBAPIError:
        connection.rollback()
        if inspect(connection).has_table(VERSION_TABLE):
            raise
        return None
    return ",".join(sorted(rows)) or None


def ensure_head(engine: Engine, url: str) -> str:
    """Bring the store at ``url`` to :data:`HEAD` if it is older; return the revision it was
    at. Raise :class:`StateError` for a store written by a newer version."""
    with engine.connect() as connection:
        found = stored_revision(connection)
    if found == HEAD:
        return found
    _check_known(found, url)
    return upgrade(engine, url)


def upgrade(engine: Engine, url: str, target: str = "head") -> str | None:
    """Upgrade the store at ``url`` to ``target`` under the upgrade lock; return the revision
    it was at (None: empty). Tests use ``target`` to build an older schema."""
    with engine.execution_options(**WRITE).begin() as connection:
        _lock(connection)
        found = _locked_revision(connection)
        _check_known(found, url)
        wanted = HEAD if target == "head" else target
        if found != wanted:
            _run_alembic(connection, target)
            log.info(
                "state: store %s upgraded from %s to %s",
                redact_url(url), found or "an empty store", wanted,
            )  # fmt: skip
    return found


def _lock(connection: Connection) -> None:
    """Serialise upgrades; on SQLite the transaction's BEGIN IMMEDIATE already did."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})


def _locked_revision(connection: Connection) -> str | None:
    """The revision read inside the upgrade's transaction (no failed statement allowed)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.exec_driver_sql(READ_VERSION).scalars().all()
    return ",".join(sorted(rows)) or None


def _check_known(found: str | None, url: str) -> None:
    if found is not None and found not in REVISIONS:
        raise StateError(
            f"the state store {redact_url(url)} was written by a newer volume-monitor "
            f"(schema revision {found}); upgrade volume-monitor to use it"
        )


def _run_alembic(connection: Connection, target: str) -> None:
    from alembic import command  # only when an upgrade is due: Alembic is slow to import
    from alembic.config import Config

    config = Config(attributes={"connection": connection})
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    with _quiet_alembic():  # its INFO lines (plugins, each step) say less than ours
        command.upgrade(config, target)


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
