"""The monitor's state store: the daily counts of every series (seeded from training, then one
day per night), the scored days, the outbox of deliveries, feedback and silences, in one SQL
database (SQLite or PostgreSQL) whose schema Alembic keeps at head.

    with open_store("sqlite:////srv/vm/state/volume-monitor.db") as store:
        store.write_counts("default", ["channelid", "actioncode", "os_family"], scores, "scored")
        store.record_day(record)

Every database failure raises :class:`StateError`, one line naming the store (password
hidden) and the driver's first line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import pandas as pd
from sqlalchemy import Table, func, select, union, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from volume_monitor.clock import now_utc
from volume_monitor.config import redact_url
from volume_monitor.state import counts, migrate
from volume_monitor.state.connect import WRITE, failure, first_use_lock, make_engine
from volume_monitor.state.frames import take_apart
from volume_monitor.state.records import (
    UNDELIVERED,
    DayRecord,
    Delivery,
    Feedback,
    Silence,
    to_json,
)
from volume_monitor.state.schema import (
    deliveries,
    feedback,
    insert_for,
    scored_days,
    series,
    silences,
)

log = logging.getLogger(__name__)

DELIVERY_KEY = ("monitor", "date", "channel", "kind")


def open_store(url: str, read_only: bool = False) -> Store:
    """The store at ``url`` (any SQLAlchemy URL of SQLite or PostgreSQL; a relative SQLite path
    must already be made absolute), its schema upgraded to head on first use. ``read_only``
    (the web service without a token): nothing is created, locked or upgraded, a SQLite file
    is opened read-only, and a store whose schema is not at head is refused."""
    if read_only:
        return _open_read_only(url)
    engine = make_engine(url)
    try:
        with first_use_lock(url):
            migrate.ensure_head(engine, url)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise failure(url, exc) from None
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, url)


def _open_read_only(url: str) -> Store:
    engine = make_engine(url, read_only=True)
    try:
        with engine.connect() as connection:
            found = migrate.stored_revision(connection)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise failure(url, exc) from None
    if found != migrate.HEAD:
        engine.dispose()
        at = f"at revision {found}" if found else "empty"
        raise failure(
            url, f"it is {at}, not {migrate.HEAD}: a nightly run or training brings it there"
        )
    return Store(engine, url)


class Store:
    """An open state store; see :func:`open_store`. Usable as a context manager."""

    def __init__(self, engine: Engine, url: str):
        self._engine = engine
        self._writer = engine.execution_options(**WRITE)
        self._url = url
        self.url = redact_url(url)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        """Close every connection of the store."""
        self._engine.dispose()

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._failures(), self._engine.connect() as connection:
            yield connection

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One transaction, committed at the end of the block (SQLite: holding the write
        lock from its start, waiting up to 60 s for another writer)."""
        with self._failures(), self._writer.begin() as connection:
            yield connection

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise failure(self._url, exc) from None

    # --- schema --------------------------------------------------------------------------

    def revision(self) -> str:
        """The schema revision the store is at (e.g. ``0002``)."""
        with self._reading() as connection:
            return migrate.stored_revision(connection) or ""

    # --- daily counts --------------------------------------------------------------------

    def write_counts(
        self, monitor: str, dimensions: Sequence[str], frame: pd.DataFrame, source: str
    ) -> int:
        """Write the daily counts of ``monitor``: ``frame`` has ``date``, each of
        ``dimensions`` (labels, compared as exact strings), ``count`` and optionally
        ``expected_low, expected_high, score, is_anomaly, direction, cause`` (missing columns
        and NaN are stored as NULL). ``source='scored'`` replaces every row of the monitor on
        the frame's dates (a series absent from the frame is gone on that day);
        ``source='train'`` adds the series-days that have no row and replaces seed rows, never
        a scored one. One transaction; returns the rows written."""
        prepared = take_apart(frame, dimensions, source)
        if not len(prepared):
            return 0
        with self._writing() as connection:
            written = counts.write(connection, monitor, prepared, source)
        log.info(
            "state: %s rows of %s written as %s (%s series, %s days)",
            written, monitor, source, len(prepared.keys), len(prepared.days),
        )  # fmt: skip
        return written

    def history(
        self,
        monitor: str,
        start: dt.date,
        end: dt.date,
        match: Mapping[str, str] | None = None,
    ) -> pd.DataFrame:
        """The daily counts of ``monitor`` from ``start`` to ``end`` (both included): ``date``,
        its dimension columns, ``count, expected_low, expected_high, score, is_anomaly,
        direction, cause, source``, sorted by date then labels. ``match`` keeps the series
        whose label equals the value for every dimension given."""
        with self._reading() as connection:
            return counts.history(connection, monitor, start, end, match)

    def on_days(self, monitor: str, days: Sequence[dt.date]) -> pd.DataFrame:
        """The daily counts of ``monitor`` on ``days``, as :meth:`history` gives them."""
        with self._reading() as connection:
            return counts.on_days(connection, monitor, days)

    def daily_totals(
        self,
        monitor: str,
        start: dt.date,
        end: dt.date,
        match: Mapping[str, str] | None = None,
    ) -> pd.DataFrame:
        """The whole volume of ``monitor`` (or of the series ``match`` keeps) per day from
        ``start`` to ``end``: ``date, count, expected_low, expected_high``."""
        with self._reading() as connection:
            return counts.totals(connection, monitor, start, end, match)

    def anomalies(self, monitor: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        """The scored series-days of ``monitor`` flagged anomalous from ``start`` to ``end``
        (both included), as :meth:`history` gives them."""
        with self._reading() as connection:
            return counts.anomalies(connection, monitor, start, end)

    def dimensions(self, monitor: str) -> list[str]:
        """The dimension names of ``monitor``'s series, in key order; [] if it has none."""
        with self._reading() as connection:
            return counts.dimension_names(connection, monitor)

    def monitors(self) -> list[str]:
        """The monitors having series or scored days, sorted."""
        query = union(select(series.c.monitor), select(scored_days.c.monitor))
        with self._reading() as connection:
            return sorted(connection.execute(query).scalars())

    # --- scored days ---------------------------------------------------------------------

    def record_day(self, record: DayRecord) -> None:
        """Record a scored day, replacing an earlier record of the same monitor and date."""
        values = {
            **asdict(record),
            **{name: int(getattr(record, name)) for name in ("rows", "anomalies")},
            **{name: bool(getattr(record, name)) for name in ("alert", "missing_day")},
            "summary": to_json(record.summary),
        }
        with self._writing() as connection:
            connection.execute(_upsert(connection, scored_days, values, ("monitor", "date")))

    def day(self, monitor: str, date: dt.date) -> DayRecord | None:
        """The record of ``monitor`` on ``date``; None if that day was never scored."""
        found = self._days(monitor, date, date)
        return found[0] if found else None

    def days(self, monitor: str, start: dt.date, end: dt.date) -> list[DayRecord]:
        """The records of ``monitor`` from ``start`` to ``end`` (both included), by date."""
        return self._days(monitor, start, end)

    def last_day(self, monitor: str, until: dt.date) -> DayRecord | None:
        """The latest record of ``monitor`` on or before ``until``; None if there is none."""
        query = (
            select(scored_days)
            .where(scored_days.c.monitor == monitor, scored_days.c.date <= until)
            .order_by(scored_days.c.date.desc())
            .limit(1)
        )
        found = self._records(query)
        return found[0] if found else None

    def _days(self, monitor: str, start: dt.date, end: dt.date) -> list[DayRecord]:
        query = (
            select(scored_days)
            .where(scored_days.c.monitor == monitor, scored_days.c.date.between(start, end))
            .order_by(scored_days.c.date)
        )
        return self._records(query)

    def _records(self, query) -> list[DayRecord]:
        with self._reading() as connection:
            rows = connection.execute(query).mappings().all()
        return [DayRecord(**{**row, "summary": json.loads(row["summary"])}) for row in rows]

    # --- the outbox ----------------------------------------------------------------------

    def delivery(self, monitor: str, date: dt.date, channel: str, kind: str) -> Delivery | None:
        """The delivery with that idempotency key; None if there is none."""
        with self._reading() as connection:
            return _delivery(connection, (monitor, date, channel, kind))

    def record_delivery(self, delivery: Delivery) -> Delivery:
        """Insert ``delivery`` or update the one with its key (monitor, date, channel, kind);
        ``created_at`` stays the first one's. Returns the delivery as stored."""
        values = {**asdict(delivery), "attempts": int(delivery.attempts)}
        with self._writing() as connection:
            statement = _upsert(connection, deliveries, values, DELIVERY_KEY, kept=("created_at",))
            row = connection.execute(statement.returning(*_delivery_columns())).mappings().one()
        return Delivery(**row)

    def deliveries(self, monitor: str, date: dt.date) -> list[Delivery]:
        """Every delivery of ``monitor``'s ``date``, by channel then kind."""
        query = (
            select(*_delivery_columns())
            .where(deliveries.c.monitor == monitor, deliveries.c.date == date)
            .order_by(deliveries.c.channel, deliveries.c.kind)
        )
        with self._reading() as connection:
            return [Delivery(**row) for row in connection.execute(query).mappings()]

    def outbox_counts(self, monitor: str) -> dict[str, int]:
        """How many of ``monitor``'s deliveries are in each status."""
        query = (
            select(deliveries.c.status, func.count())
            .where(deliveries.c.monitor == monitor)
            .group_by(deliveries.c.status)
        )
        with self._reading() as connection:
            return {status: int(n) for status, n in connection.execute(query)}

    def undelivered(self, channel: str, since: dt.date, until: dt.date) -> list[Delivery]:
        """The deliveries of ``channel`` still pending or failed, dated from ``since`` up to
        ``until`` excluded, oldest first."""
        query = (
            select(*_delivery_columns())
            .where(
                deliveries.c.channel == channel,
                deliveries.c.status.in_(UNDELIVERED),
                deliveries.c.date >= since,
                deliveries.c.date < until,
            )
            .order_by(deliveries.c.date, deliveries.c.id)
        )
        with self._reading() as connection:
            return [Delivery(**row) for row in connection.execute(query).mappings()]

    # --- feedback ------------------------------------------------------------------------

    def add_feedback(self, item: Feedback) -> int:
        """Keep a verdict; returns its id."""
        values = {name: value for name, value in asdict(item).items() if name != "id"}
        values["matchers"] = to_json(item.matchers)
        with self._writing() as connection:
            return _inserted_id(connection, feedback, values)

    def feedback(self, monitor: str, start: dt.date, end: dt.date) -> list[Feedback]:
        """The verdicts on ``monitor``'s days from ``start`` to ``end`` (both included), by date
        then in the order they were given."""
        query = (
            select(feedback)
            .where(feedback.c.monitor == monitor, feedback.c.date.between(start, end))
            .order_by(feedback.c.date, feedback.c.id)
        )
        with self._reading() as connection:
            rows = connection.execute(query).mappings().all()
        return [Feedback(**{**row, "matchers": json.loads(row["matchers"])}) for row in rows]

    def all_feedback(self, monitor: str | None = None) -> list[Feedback]:
        """Every verdict (on ``monitor``'s days when given), by monitor, date, then id."""
        query = select(feedback).order_by(feedback.c.monitor, feedback.c.date, feedback.c.id)
        if monitor is not None:
            query = query.where(feedback.c.monitor == monitor)
        with self._reading() as connection:
            rows = connection.execute(query).mappings().all()
        return [Feedback(**{**row, "matchers": json.loads(row["matchers"])}) for row in rows]

    # --- silences ------------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> int:
        """Keep a silence; returns its id."""
        values = {name: value for name, value in asdict(silence).items() if name != "id"}
        values["matchers"] = to_json(silence.matchers)
        with self._writing() as connection:
            return _inserted_id(connection, silences, values)

    def silences(
        self, monitor: str | None = None, active_on: dt.date | None = None
    ) -> list[Silence]:
        """The silences (of ``monitor`` when given), oldest first; with ``active_on``, only
        those not expired whose ``until`` is that day or later."""
        query = select(silences).order_by(silences.c.id)
        if monitor is not None:
            query = query.where(silences.c.monitor == monitor)
        if active_on is not None:
            query = query.where(silences.c.expired_at.is_(None), silences.c.until >= active_on)
        with self._reading() as connection:
            rows = connection.execute(query).mappings().all()
        return [Silence(**{**row, "matchers": json.loads(row["matchers"])}) for row in rows]

    def expire_silence(self, silence_id: int) -> bool:
        """End silence ``silence_id`` now; False if there is no such silence or it had already
        expired."""
        statement = (
            update(silences)
            .where(silences.c.id == silence_id, silences.c.expired_at.is_(None))
            .values(expired_at=now_utc())
        )
        with self._writing() as connection:
            return connection.execute(statement).rowcount == 1


def _upsert(
    connection: Connection,
    table: Table,
    values: dict[str, Any],
    key: Sequence[str],
    kept: Sequence[str] = (),
) -> Insert:
    """INSERT ``values``, or UPDATE the row with the same ``key`` (a unique constraint) but
    its ``kept`` columns."""
    insert = insert_for(connection, table).values(values)
    unchanged = {*key, *kept}
    return insert.on_conflict_do_update(
        index_elements=list(key),
        set_={name: insert.excluded[name] for name in values if name not in unchanged},
    )


def _delivery_columns() -> list:
    return [column for column in deliveries.c if column.name != "id"]


def _delivery(connection: Connection, key: tuple) -> Delivery | None:
    conditions = [
        deliveries.c[name] == value for name, value in zip(DELIVERY_KEY, key, strict=True)
    ]
    row = connection.execute(select(*_delivery_columns()).where(*conditions)).mappings().first()
    return Delivery(**row) if row is not None else None


def _inserted_id(connection: Connection, table: Table, values: dict[str, Any]) -> int:
    result = connection.execute(table.insert().values(values))
    return int(result.inserted_primary_key[0])
