"""The ETL stage: OS family per row, regroup by series, calendar features, known series
completed with zero counts (that is how "too low" and "stopped" become visible).

A series is one combination of the monitor's dimension values; ``dimensions`` is their list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from volume_monitor.agents import FamilyCache, os_families
from volume_monitor.config import DEFAULT_DIMENSIONS
from volume_monitor.db import AGENT, FAMILY, dimensions_of
from volume_monitor.errors import TooManySeriesError

log = logging.getLogger(__name__)

# The default monitor's series keys, for callers that work on its shape.
SERIES_KEYS = list(DEFAULT_DIMENSIONS)
CALENDAR_COLUMNS = ["count", "weekday", "month"]
FRAME_COLUMNS = [*SERIES_KEYS, *CALENDAR_COLUMNS]  # the default monitor's ETL frame


def regroup(
    raw: pd.DataFrame,
    cache: FamilyCache | None = None,
    dimensions: Sequence[str] = DEFAULT_DIMENSIONS,
) -> pd.DataFrame:
    """Sum ``count`` by ``date`` and ``dimensions``; an ``os_family`` dimension comes from the
    query when it provides one, else from parsing each distinct user agent once (or looking it
    up in ``cache``)."""
    keys = list(dimensions)
    frame = raw
    if FAMILY in keys and FAMILY in raw.columns:
        frame = raw.assign(os_family=raw[FAMILY].fillna("Other").astype(str))
    elif FAMILY in keys:
        frame = raw.assign(os_family=os_families(raw[AGENT], cache))
    grouped = frame.groupby(["date", *keys], as_index=False, sort=True)["count"].sum()
    return grouped.astype({"count": "int64"})


def gather(
    chunks: Iterable[pd.DataFrame], cache: FamilyCache | None, max_series: int
) -> pd.DataFrame:
    """The query's chunks, each regrouped (:func:`regroup`), as one frame of counts per date
    and series. The chunks of one day may repeat a series; the parts gathered so far are
    summed together each time they have grown by as many rows again (at least
    ``max_series``), so the work stays linear and no day is ever held with more than twice
    ``max_series`` rows: past ``max_series`` series, :class:`TooManySeriesError`."""
    parts: list[pd.DataFrame] = []
    gathered, since = None, 0
    for chunk in chunks:
        part = regroup(chunk, cache, dimensions_of(chunk.columns))
        parts.append(part)
        since += len(part)
        if since >= max(max_series, 0 if gathered is None else len(gathered)):
            gathered, parts, since = _summed([gathered, *parts], max_series), [], 0
    if not parts:
        return gathered if gathered is not None else pd.DataFrame()
    return _summed([gathered, *parts], max_series)


def _summed(parts: list[pd.DataFrame | None], max_series: int) -> pd.DataFrame:
    """``parts`` as one frame, one row per date and series; refused past ``max_series``
    series on a day."""
    present = [part for part in parts if part is not None]
    frame = pd.concat(present, ignore_index=True) if len(present) > 1 else present[0]
    if len(present) > 1:  # two chunks may hold the same series: summed
        keys = [column for column in frame.columns if column != "count"]
        frame = frame.groupby(keys, as_index=False, sort=False, observed=True)["count"].sum()
    per_day = frame["date"].value_counts()
    if len(per_day) and per_day.iloc[0] > max_series:
        day = pd.Timestamp(per_day.index[0]).date()
        raise TooManySeriesError(
            f"the query gave at least {per_day.iloc[0]:,} series for {day}, more than "
            f"VM_MAX_SERIES ({max_series:,}): a dimension column may hold ids; group by "
            "fewer or coarser columns, or raise VM_MAX_SERIES"
        )
    return frame


def complete(
    frame: pd.DataFrame,
    series: pd.DataFrame,
    dates: Iterable,
    dimensions: Sequence[str] = DEFAULT_DIMENSIONS,
) -> pd.DataFrame:
    """Every (date, known series) pair, with ``count`` 0 where the series was absent, sorted
    by date and series. The dimensions are categorical (a year of 20,000 series holds 20,000
    labels, not 7.3 million), or strings when ``frame`` has series that are not known.

    ``frame`` has a ``date`` column; ``series`` holds the known combinations of
    ``dimensions``. Series in ``frame`` that are not known are kept as they are. The grid of
    days × series is built from integer codes, not by merging string columns: a year of
    20,000 series is 7.3 million rows.
    """
    keys = list(dimensions)
    days = pd.DatetimeIndex(pd.to_datetime(pd.Index(list(dates)))).unique().sort_values()
    if len(frame) and pd.api.types.is_datetime64_dtype(frame["date"]):
        days = days.as_unit(frame["date"].dt.unit)
    known = pd.MultiIndex.from_frame(series[keys].drop_duplicates()).sort_values()
    grid = pd.MultiIndex(
        levels=[days, *known.levels],
        codes=[
            np.repeat(np.arange(len(days)), len(known)),
            *[np.tile(codes, len(days)) for codes in known.codes],
        ],
        names=["date", *keys],
    )
    counts = frame.set_index(["date", *keys])["count"]
    if not counts.index.is_unique:  # a series more than once a day: summed
        counts = counts.groupby(level=list(range(len(keys) + 1)), sort=False).sum()
    completed = pd.DataFrame(
        {
            "date": grid.levels[0].take(grid.codes[0]),
            **{
                key: pd.Categorical.from_codes(codes, categories=level)
                for key, level, codes in zip(keys, grid.levels[1:], grid.codes[1:], strict=True)
            },
            "count": counts.reindex(grid, fill_value=0).to_numpy(),
        }
    )
    in_grid = frame["date"].isin(days) & pd.MultiIndex.from_frame(frame[keys]).isin(known)
    if not in_grid.all():
        unknown = frame.loc[~in_grid, ["date", *keys, "count"]]
        labelled = completed.astype(dict.fromkeys(keys, str))
        completed = pd.concat([labelled, unknown]).sort_values(["date", *keys])
    return completed.astype({"count": "int64"}).reset_index(drop=True)


def add_calendar(frame: pd.DataFrame, dimensions: Sequence[str] = DEFAULT_DIMENSIONS):
    """``date`` becomes the index; ``weekday`` (Monday 0) and ``month`` (1-12) are added."""
    dates = pd.to_datetime(frame["date"])
    with_calendar = frame.assign(date=dates, weekday=dates.dt.day_of_week, month=dates.dt.month)
    return with_calendar.set_index("date")[[*dimensions, *CALENDAR_COLUMNS]]


def prepare(
    raw: pd.DataFrame,
    series: pd.DataFrame | None = None,
    dates: Iterable | None = None,
    dimensions: Sequence[str] = DEFAULT_DIMENSIONS,
) -> pd.DataFrame:
    """The whole ETL: regroup, complete the known ``series`` over ``dates`` (default: the
    series and dates present in ``raw``), add the calendar."""
    keys = list(dimensions)
    grouped = regroup(raw, dimensions=keys)
    known = grouped[keys] if series is None else series
    days = grouped["date"].unique() if dates is None else dates
    prepared = add_calendar(complete(grouped, known, days, keys), keys)
    log.info(
        "etl: %d rows, %d series, %d days",
        len(prepared),
        len(prepared[keys].drop_duplicates()),
        prepared.index.nunique(),
    )
    return prepared
