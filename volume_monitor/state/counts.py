"""Daily counts in the state store. Writing: a scored day replaces every row of the monitor
on that day; a training seed fills the days nobody scored and never overwrites what the
monitor said on a night. Reading: a monitor's history, per series or summed per day."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Select, cast, delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from volume_monitor.errors import StateError
from volume_monitor.state import bulk
from volume_monitor.state.frames import CountFrame
from volume_monitor.state.records import series_key
from volume_monitor.state.schema import OPTIONAL_COUNT_COLUMNS, daily_counts, insert_for, series

BATCH_ROWS = 50_000
CHUNK = 500  # dates or series ids bound in one IN (...)
VALUE_COLUMNS = ("count", *OPTIONAL_COUNT_COLUMNS, "source")
HISTORY_DTYPES = {
    "count": "int64",
    "expected_low": "float64",
    "expected_high": "float64",
    "score": "float64",
    "is_anomaly": "boolean",
    "direction": object,
    "cause": object,
    "source": object,
}
TEXT_COLUMNS = ("direction", "cause", "source")
TOTAL_COLUMNS = ("count", "expected_low", "expected_high")

# --- writing ---------------------------------------------------------------------------


def write(connection: Connection, monitor: str, counts: CountFrame, source: str) -> int:
    """Write ``counts`` of ``monitor`` as ``source`` ('scored' or 'train'); rows written."""
    ids = series_ids(connection, monitor, counts.keys)
    if source == "scored":
        _delete_days(connection, monitor, counts.days)
    insert = _insert(connection, source)
    batches = _batches(connection, counts, ids, source)
    if connection.dialect.name == "postgresql":
        return bulk.write(connection, batches, insert)
    execute = _executor(connection, insert)
    return sum(execute(batch) for batch in batches)


def series_ids(connection: Connection, monitor: str, keys: list[str]) -> np.ndarray:
    """The id of each of ``keys`` of ``monitor``, creating the series that are new. Only
    these keys are looked up: a monitor that once had a million series costs a night of 500
    what 500 cost."""
    known = series_keys(connection, monitor, keys)
    missing = [key for key in keys if key not in known]
    if missing:
        insert = insert_for(connection, series).on_conflict_do_nothing(
            index_elements=["monitor", "key"]
        )
        connection.execute(insert, [{"monitor": monitor, "key": key} for key in missing])
        known.update(series_keys(connection, monitor, missing))
    return np.array([known[key] for key in keys], dtype=np.int64)


def series_keys(connection: Connection, monitor: str, keys: list[str]) -> dict[str, int]:
    """The id of each of ``keys`` that ``monitor`` has: key -> id."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), CHUNK):
        query = select(series.c.key, series.c.id).where(
            series.c.monitor == monitor, series.c.key.in_(keys[start : start + CHUNK])
        )
        found.update((key, id_) for key, id_ in connection.execute(query))
    return found


def dimension_names(connection: Connection, monitor: str) -> list[str]:
    """The dimension names of ``monitor``'s series, in key order; [] if it has none."""
    query = select(series.c.key).where(series.c.monitor == monitor)
    key = connection.execute(query.order_by(series.c.id).limit(1)).scalar()
    return list(json.loads(key)) if key is not None else []


def _delete_days(connection: Connection, monitor: str, days: list[dt.date]) -> None:
    of_monitor = select(series.c.id).where(series.c.monitor == monitor)
    for start in range(0, len(days), CHUNK):
        connection.execute(
            delete(daily_counts).where(
                daily_counts.c.series_id.in_(of_monitor),
                daily_counts.c.date.in_(days[start : start + CHUNK]),
            )
        )


def _insert(connection: Connection, source: str) -> Insert:
    insert = insert_for(connection, daily_counts)
    if source == "scored":  # the monitor's rows of those days are deleted first
        return insert
    # A seed row replaces a row only when that one is a seed too: the incoming source is
    # 'train', so "same source" means the stored row was never scored.
    return insert.on_conflict_do_update(
        index_elements=["series_id", "date"],
        set_={name: insert.excluded[name] for name in VALUE_COLUMNS},
        where=daily_counts.c.source == insert.excluded.source,
    )


def _batches(
    connection: Connection, counts: CountFrame, ids: np.ndarray, source: str
) -> Iterator[dict[str, list]]:
    """The rows to write, BATCH_ROWS at a time, by column; dates as the driver wants them.
    Rows go by series, then day: filling the primary key's B-tree one series at a time instead
    of all over it makes a year's seed about twice as fast."""
    row_ids = ids[counts.series_codes]
    order = counts.order
    as_text = connection.dialect.name == "sqlite"  # SQLAlchemy stores SQLite dates as text
    days = np.array([day.isoformat() if as_text else day for day in counts.days], dtype=object)
    for start in range(0, len(order), BATCH_ROWS):
        rows = order[start : start + BATCH_ROWS]
        columns = counts.columns(rows)
        columns["series_id"] = row_ids[rows].tolist()
        columns["date"] = days[counts.day_codes[rows]].tolist()
        columns["source"] = [source] * len(rows)
        yield columns


def _executor(connection: Connection, insert: Insert) -> Callable[[dict[str, list]], int]:
    """A function running ``insert`` for a batch of columns and returning the rows written:
    the compiled statement goes straight to the driver's executemany, with plain tuples."""
    compiled = insert.compile(dialect=connection.dialect)
    order = list(compiled.positiontup or [])

    def run(columns: dict[str, list]) -> int:
        rows = list(zip(*(columns[name] for name in order), strict=True))
        return connection.exec_driver_sql(compiled.string, rows).rowcount

    return run


# --- reading ---------------------------------------------------------------------------


def labels_of(
    connection: Connection, monitor: str, match: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The dimension values of the series of ``monitor``, indexed by series id, one column
    per dimension in key order. When ``match`` names a value for every dimension, only that
    series is read (by its key); otherwise every series of the monitor."""
    query = select(series.c.id, series.c.key).where(series.c.monitor == monitor)
    names = dimension_names(connection, monitor) if match else []
    if names and set(names) == set(match):
        query = query.where(series.c.key == series_key({n: str(match[n]) for n in names}))
    rows = connection.execute(query.order_by(series.c.id)).all()
    return pd.DataFrame.from_records(
        [json.loads(key) for _, key in rows],
        index=pd.Index([id_ for id_, _ in rows], dtype="int64"),
        columns=names or None,
    )


def history(
    connection: Connection,
    monitor: str,
    start: dt.date,
    end: dt.date,
    match: Mapping[str, str] | None,
) -> pd.DataFrame:
    """The rows of ``monitor`` on days ``start`` to ``end`` included, with their labels."""
    labels = labels_of(connection, monitor, match)
    if labels.empty:
        return empty_history(list(labels.columns))
    ids = matching_ids(monitor, labels, match)
    rows = _rows(connection, monitor, start, end, ids)
    return _with_labels(rows, labels)


def on_days(connection: Connection, monitor: str, days: Sequence[dt.date]) -> pd.DataFrame:
    """The rows of ``monitor`` on ``days``, with their labels."""
    labels = labels_of(connection, monitor)
    if labels.empty or not days:
        return empty_history(list(labels.columns))
    columns = [daily_counts.c.series_id, daily_counts.c.date]
    columns += [daily_counts.c[name] for name in VALUE_COLUMNS]
    query = select(*columns).where(daily_counts.c.date.in_(sorted(set(days))))
    return _with_labels(_frame(connection, _of_monitor(query, monitor)), labels)


def anomalies(connection: Connection, monitor: str, start: dt.date, end: dt.date):
    """The scored rows of ``monitor`` flagged anomalous on days ``start`` to ``end``
    included, with their labels."""
    labels = labels_of(connection, monitor)
    if labels.empty:
        return empty_history(list(labels.columns))
    columns = [daily_counts.c.series_id, daily_counts.c.date]
    columns += [daily_counts.c[name] for name in VALUE_COLUMNS]
    query = select(*columns).where(
        daily_counts.c.date.between(start, end),
        daily_counts.c.is_anomaly.is_(True),
        daily_counts.c.source == "scored",
    )
    return _with_labels(_frame(connection, _of_monitor(query, monitor)), labels)


def matching_ids(
    monitor: str, labels: pd.DataFrame, match: Mapping[str, str] | None
) -> list[int] | None:
    """The ids of the series whose labels equal every ``match`` pair; None: no filter."""
    if not match:
        return None
    unknown = [name for name in match if name not in labels.columns]
    if unknown:
        raise StateError(
            f"monitor {monitor!r} has no dimension {unknown[0]!r} "
            f"(dimensions: {', '.join(labels.columns)})"
        )
    keep = np.logical_and.reduce([labels[name] == str(value) for name, value in match.items()])
    return labels.index[keep].tolist()


def _rows(
    connection: Connection, monitor: str, start: dt.date, end: dt.date, ids: list[int] | None
) -> pd.DataFrame:
    columns = [daily_counts.c.series_id, daily_counts.c.date]
    columns += [daily_counts.c[name] for name in VALUE_COLUMNS]
    query = select(*columns).where(daily_counts.c.date.between(start, end))
    if ids is None:
        return _frame(connection, _of_monitor(query, monitor))
    chunks = [ids[first : first + CHUNK] for first in range(0, len(ids), CHUNK)] or [[]]
    return pd.concat(
        [_frame(connection, query.where(daily_counts.c.series_id.in_(part))) for part in chunks],
        ignore_index=True,
    )


def _of_monitor(query: Select, monitor: str) -> Select:
    return query.join(series, series.c.id == daily_counts.c.series_id).where(
        series.c.monitor == monitor
    )


def _frame(connection: Connection, query: Select) -> pd.DataFrame:
    result = connection.execute(query)
    names = list(result.keys())
    # Plain tuples: pandas inspects SQLAlchemy rows one attribute at a time (4x slower).
    return pd.DataFrame.from_records([tuple(row) for row in result.all()], columns=names)


def _with_labels(rows: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the labels of their series, sorted by date then labels (sorting the
    series once and the rows by integer codes: fast for a million rows)."""
    ranked = labels.sort_values(list(labels.columns), kind="stable")
    position = ranked.index.get_indexer(rows["series_id"])
    day_codes, days = pd.factorize(rows["date"], sort=True)
    order = np.lexsort((position, day_codes))
    frame = ranked.iloc[position[order]].reset_index(drop=True)
    frame.insert(0, "date", _dates(days).to_numpy()[day_codes[order]])
    for name in VALUE_COLUMNS:
        frame[name] = rows[name].to_numpy()[order]
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The history's types, whatever pandas inferred; missing texts are None."""
    frame = frame.astype(HISTORY_DTYPES)
    for name in TEXT_COLUMNS:
        frame[name] = frame[name].where(frame[name].notna(), None)
    return frame


def _dates(values: pd.Series | pd.Index) -> pd.Series | pd.Index:
    """Dates as datetime64[ns], whatever the driver returned (date objects or text)."""
    return pd.to_datetime(values).astype("datetime64[ns]")


def empty_history(dimensions: list[str]) -> pd.DataFrame:
    """A history without rows: its columns and types only."""
    frame = pd.DataFrame({name: pd.Series(dtype=object) for name in dimensions})
    frame.insert(0, "date", pd.Series(dtype="datetime64[ns]"))
    for name, dtype in HISTORY_DTYPES.items():
        frame[name] = pd.Series(dtype=dtype)
    return frame


def totals(
    connection: Connection,
    monitor: str,
    start: dt.date,
    end: dt.date,
    match: Mapping[str, str] | None,
) -> pd.DataFrame:
    """One row per day: count, expected_low and expected_high summed over the matched series
    (a sum of nothing but missing values stays missing)."""
    if match:
        frame = history(connection, monitor, start, end, match)
        summed = frame.groupby("date", as_index=False)[list(TOTAL_COLUMNS)].sum(min_count=1)
    else:
        summed = _frame(connection, _totals_query(monitor, start, end))
        summed["date"] = _dates(summed["date"])
    return summed.astype({"count": "int64", "expected_low": "float64", "expected_high": "float64"})


def _totals_query(monitor: str, start: dt.date, end: dt.date) -> Select:
    day = daily_counts.c.date
    query = select(
        day,
        cast(func.sum(daily_counts.c["count"]), BigInteger).label("count"),
        func.sum(daily_counts.c.expected_low).label("expected_low"),
        func.sum(daily_counts.c.expected_high).label("expected_high"),
    ).where(day.between(start, end))
    return _of_monitor(query, monitor).group_by(day).order_by(day)
