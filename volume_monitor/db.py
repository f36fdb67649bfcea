"""The database stage: an engine from the URL, a query file run with bound dates, and the
check that its result honours the query contract.

The contract: one row per aggregate with the columns ``date``, ``count`` and the monitor's
dimension columns. A dimension ``os_family`` may come as ``user_agent`` (each distinct agent is
then parsed into its OS family). Without declared dimensions, every column but ``date`` and
``count`` is one. The default monitor's dimensions are ``channelid, actioncode, os_family``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlparse
from sqlalchemy import Date, bindparam, create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause

from volume_monitor.config import DEFAULT_DIMENSIONS, redact_url
from volume_monitor.errors import ConfigError, DatabaseError, QueryError

log = logging.getLogger(__name__)

AGENT, FAMILY = "user_agent", "os_family"  # a user agent column becomes the OS family
MISSING_LABEL = "(none)"
# Rows of the query result held in memory at once (10k: ~30 MB less peak than 20k).
CHUNK_ROWS = 10_000


# Each connection of a read-only engine is made read-only before its first query, so that a
# query file that writes (a function with side effects, a data-modifying CTE) fails there.
READ_ONLY_SESSION = {
    "sqlite": "PRAGMA query_only = ON",
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
}
# What a driver says when the query timeout stopped the query.
TIMED_OUT = ("statement timeout", "max_statement_time", "max_execution_time", "interrupted")
GRACE = 30.0  # seconds a MySQL client waits beyond the server's own query deadline


def make_engine(
    url: str,
    must_exist: bool = True,
    read_only: bool = True,
    connect_timeout: float | None = None,
    query_timeout: float | None = None,
) -> Engine:
    """An engine for ``url``, read-only unless ``read_only`` is false (on SQLite, PostgreSQL
    and MySQL/MariaDB; other dialects rely on the database user's rights). With
    ``connect_timeout`` a server that does not accept the connection is given up; with
    ``query_timeout`` a query running longer is stopped on the server. A SQLite file must
    already exist unless ``must_exist`` is false, so a mistyped path is reported instead of
    silently creating an empty database."""
    safe = redact_url(url)
    file = sqlite_file(url)
    if file is not None:
        if must_exist and not file.is_file():
            raise DatabaseError(f"cannot reach the database {safe}: the file does not exist")
        file.parent.mkdir(parents=True, exist_ok=True)
    family = _family(url)
    try:
        engine = create_engine(
            url, pool_pre_ping=True, connect_args=_connect_args(family, connect_timeout,
                                                                query_timeout),
        )  # fmt: skip
    except NoSuchModuleError:
        raise ConfigError(f"VM_DATABASE_URL names an unknown database dialect: {safe}") from None
    except ImportError as exc:
        raise ConfigError(
            f"the database driver for {safe} is not installed ({exc.name}); "
            "install the matching extra, e.g. pip install 'volume-monitor[postgres]'"
        ) from None
    setup = [READ_ONLY_SESSION[family]] if read_only and family in READ_ONLY_SESSION else []
    if setup or query_timeout or connect_timeout:

        def prepare(dbapi_connection, _record) -> None:
            _prepare(dbapi_connection, family, setup, query_timeout)

        event.listen(engine, "connect", prepare)
    return engine


def _family(url: str) -> str:
    """``sqlite``, ``postgresql``, ``mysql`` (MariaDB included) or another backend's name."""
    try:
        name = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):
        return ""
    return "mysql" if name == "mariadb" else name


def _connect_args(family: str, connect_timeout, query_timeout) -> dict:
    args: dict = {}
    if connect_timeout and family in ("postgresql", "mysql"):
        args["connect_timeout"] = max(1, math.ceil(connect_timeout))
    if connect_timeout and family == "mysql":  # also bounds the wait for the server's greeting
        args["read_timeout"] = max(1, math.ceil(connect_timeout))
    return args


def _prepare(dbapi_connection, family: str, setup: list[str], query_timeout) -> None:
    """Make a new driver connection read-only and give its queries their deadline, then
    commit (a PostgreSQL ``SET`` is undone by the rollback the pool does otherwise)."""
    cursor = dbapi_connection.cursor()
    try:
        for statement in setup:
            cursor.execute(statement)
        if query_timeout and family == "postgresql":
            cursor.execute(f"SET statement_timeout = {math.ceil(query_timeout * 1000)}")
        elif family == "mysql":
            _mysql_deadline(dbapi_connection, cursor, query_timeout)
    finally:
        cursor.close()
    dbapi_connection.commit()
    if query_timeout and family == "sqlite":
        ends = time.monotonic() + query_timeout  # the engine serves one query: this one
        dbapi_connection.set_progress_handler(lambda: int(time.monotonic() > ends), 100_000)


def _mysql_deadline(dbapi_connection, cursor, seconds: float | None) -> None:
    """MariaDB's ``max_statement_time`` (seconds), else MySQL's ``max_execution_time``; the
    client then waits for answers up to past that deadline (its shorter wait bounded the
    connection), or without limit when there is none."""
    if seconds:
        try:
            cursor.execute(f"SET SESSION max_statement_time = {seconds:g}")
        except Exception:  # MySQL has no such variable
            cursor.execute(f"SET SESSION max_execution_time = {math.ceil(seconds * 1000)}")
    if hasattr(dbapi_connection, "_read_timeout"):  # PyMySQL's, read before each answer
        dbapi_connection._read_timeout = math.ceil(seconds + GRACE) if seconds else None


def sqlite_file(url: str) -> Path | None:
    """The database file a SQLite URL names; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        return Path(database)
    return None


def read_sql(path: Path) -> str:
    """The text of the query file ``path``."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the query file {path}: {exc.strerror}") from None


def read_query(path: Path) -> TextClause:
    """The SQL in ``path`` as a statement with ``:start`` and ``:end`` bound as dates: exactly
    one statement, a ``SELECT`` (or ``WITH … SELECT``)."""
    sql = without_comment_lines(read_sql(path))
    _check_one_select(sql, path)
    statement = text(sql)
    names = set(statement.compile().params)
    missing = {"start", "end"} - names
    if missing:
        raise QueryError(
            f"the query {path.name} must use the bound parameters :start and :end "
            f"(missing: {', '.join(':' + m for m in sorted(missing))})"
        )
    return statement.bindparams(bindparam("start", type_=Date), bindparam("end", type_=Date))


def _check_one_select(sql: str, path: Path) -> None:
    """Refuse a query file holding more than one statement, or one that is not a SELECT."""
    statements = [
        part for part in sqlparse.split(sql)
        if sqlparse.format(part, strip_comments=True).strip().strip(";").strip()
    ]  # fmt: skip
    if len(statements) != 1:
        raise QueryError(
            f"the query {path.name} must hold exactly one statement, a SELECT; "
            f"it holds {len(statements)}"
        )
    kind = sqlparse.parse(statements[0])[0].get_type()
    if kind != "SELECT":
        raise QueryError(f"the query {path.name} must be a SELECT, not {kind}")


@dataclass(frozen=True)
class Contract:
    """What a query result must hold: ``date``, ``count`` and the ``dimensions``; ``agent``
    names the column holding user agents to parse into ``os_family`` (None: nothing to
    parse)."""

    dimensions: tuple[str, ...]
    agent: str | None = None

    @property
    def columns(self) -> list[str]:
        """The columns of a checked frame, in order."""
        kept = [self.agent if d == FAMILY and self.agent else d for d in self.dimensions]
        return ["date", *kept, "count"]


def dimensions_of(columns: Sequence[str]) -> list[str]:
    """The dimensions a result or frame with ``columns`` holds: every column but ``date`` and
    ``count``, a ``user_agent`` column standing for ``os_family``."""
    names = [FAMILY if str(c) == AGENT else str(c) for c in columns]
    return list(dict.fromkeys(c for c in names if c not in ("date", "count")))


def contract_for(columns: Sequence[str], dimensions: Sequence[str] | None) -> Contract:
    """The contract a result with ``columns`` meets for the declared ``dimensions`` (None:
    every column but ``date`` and ``count``), or :class:`QueryError` naming what is missing."""
    names = [str(c).lower() for c in columns]
    if dimensions is None:
        dimensions = dimensions_of(names)
    agent = AGENT if FAMILY in dimensions and FAMILY not in names and AGENT in names else None
    missing = [c for c in ("date", *dimensions, "count") if c not in names]
    if agent:
        missing.remove(FAMILY)
    missing = [f"{AGENT} (or {FAMILY})" if c == FAMILY else c for c in missing]
    if missing:
        raise QueryError(
            f"the query result is missing the column(s) {', '.join(missing)}; "
            f"it returned {', '.join(names) or 'no columns'}"
        )
    if not dimensions:
        raise QueryError("the query result has no dimension column besides date and count")
    return Contract(tuple(dimensions), agent)


def fetch(
    engine: Engine,
    query: TextClause,
    start: dt.date,
    end: dt.date,
    dimensions: Sequence[str] | None = DEFAULT_DIMENSIONS,
    latest: Latest | None = None,
) -> pd.DataFrame:
    """Run ``query`` for ``[start, end)`` and return its rows checked against the contract."""
    chunks = fetch_chunks(engine, query, start, end, dimensions, latest=latest)
    return pd.concat(chunks, ignore_index=True)


@dataclass
class Latest:
    """A freshness column of the counts query (``column``, the latest event time of each
    row's group) and the latest of its values seen so far (None: none yet)."""

    column: str
    value: object = None

    def see(self, frame: pd.DataFrame, name: str) -> None:
        values = frame[name].dropna()
        if len(values):
            top = values.max()
            self.value = top if self.value is None else max(self.value, top)


def fetch_chunks(
    engine: Engine,
    query: TextClause,
    start: dt.date,
    end: dt.date,
    dimensions: Sequence[str] | None = DEFAULT_DIMENSIONS,
    rows: int = CHUNK_ROWS,
    latest: Latest | None = None,
) -> Iterator[pd.DataFrame]:
    """Run ``query`` for ``[start, end)`` and yield its rows checked against the contract
    for ``dimensions``, ``rows`` at a time, streamed from the server where the driver can:
    memory does not grow with the size of the result. At least one (perhaps empty) frame is
    yielded. With ``latest``, its column is no dimension: the latest of its values is kept
    there."""
    began, total = time.perf_counter(), 0
    connection, safe = _connect(engine)
    with connection:
        try:
            streamed = connection.execution_options(stream_results=True, yield_per=rows)
            result = streamed.execute(query, {"start": start, "end": end})
            with result:  # closed even when a chunk breaks the contract: no lock is left
                columns = list(result.keys())
                fresh = _freshness_column(columns, latest)
                counted = [c for c in columns if c != fresh]
                contract = contract_for(counted, dimensions)
                _warn_of_extra_columns(counted, contract)
                for part in result.partitions(rows):
                    total += len(part)
                    # plain tuples (pandas probes Row objects for attributes: 8x slower) into
                    # object columns, converted once by check_contract
                    tuples = [tuple(row) for row in part]
                    frame = pd.DataFrame(tuples, columns=columns, dtype=object)
                    if fresh is not None:
                        latest.see(frame, fresh)
                    yield check_contract(frame, contract)
                if not total:
                    yield check_contract(pd.DataFrame(columns=columns), contract)
        except SQLAlchemyError as exc:
            reason = first_line(exc)
            if any(word in reason for word in TIMED_OUT):
                reason = f"it ran longer than VM_QUERY_TIMEOUT and was stopped ({reason})"
            raise QueryError(f"the query failed on {safe}: {reason}") from None
    log.info(
        "db: %d aggregated rows for %s..%s in %.2fs", total, start, end,
        time.perf_counter() - began,
    )  # fmt: skip


def _connect(engine: Engine) -> tuple[Connection, str]:
    """A connection of ``engine`` and its URL without secrets, for messages; a
    :class:`DatabaseError` naming it when the database cannot be reached."""
    safe = redact_url(engine.url.render_as_string(hide_password=False))
    try:
        return engine.connect(), safe
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot reach the database {safe}: {first_line(exc)}") from None


def _freshness_column(columns: list[str], latest: Latest | None) -> str | None:
    """The result's column that ``latest`` names (None without one), or a
    :class:`QueryError` when the result lacks it."""
    if latest is None:
        return None
    found = next((c for c in columns if str(c).lower() == latest.column.lower()), None)
    if found is None:
        raise QueryError(
            f"the query result has no freshness column {latest.column!r}; "
            f"it returned {', '.join(map(str, columns))}"
        )
    return found


def fetch_value(engine: Engine, query: TextClause, start: dt.date, end: dt.date) -> object:
    """The first value of the first row ``query`` returns for ``[start, end)`` (None when it
    returns no row): what a freshness query gives."""
    connection, safe = _connect(engine)
    with connection:
        try:
            return connection.execute(query, {"start": start, "end": end}).scalar()
        except SQLAlchemyError as exc:
            raise QueryError(f"the freshness query failed on {safe}: {first_line(exc)}") from None


def _warn_of_extra_columns(columns: list[str], contract: Contract) -> None:
    """Columns beyond the contract are dropped; their rows are summed into their series."""
    known = set(contract.columns)
    extra = [str(c) for c in columns if str(c).lower() not in known]
    if extra:
        log.warning(
            "db: the query's extra column(s) %s are ignored; their rows are summed per series",
            ", ".join(extra),
        )


def check_contract(
    frame: pd.DataFrame, contract: Contract | Sequence[str] | None = DEFAULT_DIMENSIONS
) -> pd.DataFrame:
    """The query result with normalised types, or :class:`QueryError` naming what is wrong.

    ``contract`` is a :class:`Contract` or the dimensions to build one for. ``date`` becomes
    a datetime64 day, each dimension a string (NULL becomes ``(none)``), ``count`` a
    non-negative integer; a ``user_agent`` column to parse is kept as it is.
    """
    frame = frame.rename(columns=str.lower)
    if not isinstance(contract, Contract):
        contract = contract_for(list(frame.columns), contract)
    columns = {"date": _dates(frame["date"])}
    for name in contract.columns[1:-1]:
        columns[name] = frame[name] if name == contract.agent else _labels(frame[name])
    columns["count"] = _counts(frame["count"])
    return pd.DataFrame(columns)


def query_fingerprint(path: Path) -> str:
    """A hash of the query file's SQL without comment lines and with white space folded: a
    model remembers the query it learnt from, and editing a comment changes nothing."""
    sql = without_comment_lines(read_sql(path))
    folded = re.sub(r"\s+", " ", sql).strip()
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()[:16]


def without_comment_lines(sql: str) -> str:
    """``sql`` without whole-line ``--`` comments, so a ``:name`` in a comment is not taken for
    a bound parameter."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def first_line(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's appended SQL and links."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def _dates(column: pd.Series) -> pd.Series:
    """Days as datetime64, each distinct value converted once (a chunk holds a few days)."""
    codes, distinct = pd.factorize(column)
    days = _distinct_dates(pd.Series(distinct, dtype=column.dtype)).to_numpy()
    converted = np.append(days, np.datetime64("NaT", "s"))[codes]  # code -1 (NULL): NaT
    bad = int(np.isnat(converted).sum())
    if bad:
        raise QueryError(f"the query column date has {bad} value(s) that are not dates")
    return pd.Series(converted, index=column.index, name=column.name)


def _distinct_dates(column: pd.Series) -> pd.Series:
    """``column``'s values as days, NaT where one is not a date."""
    dates = pd.to_datetime(column, errors="coerce")
    if dates.isna().any():  # formats differ between values
        dates = pd.to_datetime(column, errors="coerce", format="mixed")
    if dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    return dates.dt.normalize()


def _labels(column: pd.Series) -> pd.Series:
    """Labels as strings; integer ids that pandas widened to float (a NULL among them) keep
    their integer spelling, so a series has one label on every day."""
    if pd.api.types.is_float_dtype(column) and (column.dropna() % 1 == 0).all():
        column = column.astype("Int64")
    return column.astype(object).where(column.notna(), MISSING_LABEL).astype(str)


def _counts(column: pd.Series) -> pd.Series:
    counts = pd.to_numeric(column, errors="coerce")
    if counts.isna().any():
        raise QueryError(
            f"the query column count has {int(counts.isna().sum())} NULL or non-numeric value(s)"
        )
    if (counts < 0).any():
        raise QueryError(f"the query column count has {int((counts < 0).sum())} negative value(s)")
    not_whole = ~np.isfinite(counts) | (counts % 1 != 0) | (counts >= 2**63)
    if not_whole.any():
        raise QueryError(
            f"the query column count has {int(not_whole.sum())} value(s) that are not whole "
            "numbers below 2**63"
        )
    return counts.astype("int64")
