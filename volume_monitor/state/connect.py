"""The state store's engine: SQLite in WAL mode with a 60 s busy timeout and real
transactions (so two processes writing the same file wait for each other instead of failing),
or PostgreSQL; and the one-line messages of its failures, never with a password."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from volume_monitor.config import redact_url, url_password_forms
from volume_monitor.db import first_line, sqlite_file
from volume_monitor.errors import StateError

SUPPORTED = ("sqlite", "postgresql")
BUSY_TIMEOUT_S = 60
PG_CONNECT_TIMEOUT_S = 10
# Execution option of the connections that write: on SQLite their transaction starts with
# BEGIN IMMEDIATE, taking the write lock first, so a read-then-write never fails midway.
WRITE = {"state_write": True}
SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",  # safe in WAL mode: a power cut loses the last commit only
)


def failure(url: str, reason: str | BaseException) -> StateError:
    """The one-line :class:`StateError` for the store at ``url`` failing for ``reason``."""
    text = first_line(reason) if isinstance(reason, BaseException) else reason
    for password in url_password_forms(url):
        if password:
            text = text.replace(password, "***")
    return StateError(f"cannot use the state store {redact_url(url)}: {text}")


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for the store at ``url`` (the SQLite file's folder is created); connecting
    happens on first use. ``read_only``: a SQLite file is opened read-only and its folder is
    left alone."""
    try:
        backend = make_url(url).get_backend_name()
        if backend not in SUPPORTED:
            raise failure(url, f"the state store must be SQLite or PostgreSQL, not {backend}")
        target = url
        if read_only and sqlite_file(url) is not None:
            target = f"sqlite:///file:{sqlite_file(url)}?mode=ro&uri=true"
        else:
            _make_folder(url)
        engine = create_engine(target, pool_pre_ping=True, connect_args=_connect_args(url))
    except SQLAlchemyError as exc:
        raise failure(url, exc) from None
    except ImportError as exc:
        raise failure(url, f"its database driver is not installed ({exc.name})") from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


@contextmanager
def first_use_lock(url: str) -> Iterator[None]:
    """Hold, waiting for it, an exclusive lock beside a SQLite store's file while the store is
    first opened: turning a new file to WAL and creating its tables are one process's job at a
    time. Other databases lock inside the upgrade itself (see ``migrate``)."""
    file = sqlite_file(url)
    if file is None:
        yield
        return
    try:
        handle = open(file.with_name(file.name + ".lock"), "a")  # noqa: SIM115 - held below
    except OSError as exc:
        raise failure(url, f"cannot lock {file}: {exc.strerror or exc}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_folder(url: str) -> None:
    file = sqlite_file(url)
    if file is None:
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise failure(url, f"cannot create {file.parent}: {exc.strerror or exc}") from None


def _connect_args(url: str) -> dict[str, object]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"timeout": BUSY_TIMEOUT_S}
    if "connect_timeout" in parsed.query:
        return {}
    return {"connect_timeout": PG_CONNECT_TIMEOUT_S}


def _sqlite_connect(dbapi_connection, _record) -> None:
    """Take transaction control from the sqlite3 driver (it would not BEGIN before DDL or
    SELECT) and set the store's pragmas."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    writes = connection.get_execution_options().get("state_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
