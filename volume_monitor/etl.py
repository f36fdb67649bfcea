"""The ETL stage: OS family per row, regroup by series, calendar features, known series
completed with zero counts (that is how "too low" and "stopped" become visible)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from volume_monitor.agents import FamilyCache, os_families

log = logging.getLogger(__name__)

SERIES_KEYS = ["channelid", "actioncode", "os_family"]
FRAME_COLUMNS = [*SERIES_KEYS, "count", "weekday", "month"]


def regroup(raw: pd.DataFrame, cache: FamilyCache | None = None) -> pd.DataFrame:
    """Sum ``count`` by ``date, channelid, actioncode, os_family``; the OS family comes from
    the query when it provides one, else from parsing each distinct user agent once (or
    looking it up in ``cache``)."""
    if "os_family" in raw.columns:
        frame = raw.assign(os_family=raw["os_family"].fillna("Other").astype(str))
    else:
        frame = raw.assign(os_family=os_families(raw["user_agent"], cache))
    grouped = frame.groupby(["date", *SERIES_KEYS], as_index=False, sort=True)["count"].sum()
    return grouped.astype({"count": "int64"})


def complete(frame: pd.DataFrame, series: pd.DataFrame, dates: Iterable) -> pd.DataFrame:
    """Every (date, known series) pair, with ``count`` 0 where the series was absent.

    ``frame`` has a ``date`` column; ``series`` holds the known ``SERIES_KEYS`` combinations.
    Series in ``frame`` that are not known are kept as they are.
    """
    days = pd.DataFrame({"date": pd.to_datetime(pd.Index(list(dates))).unique()})
    grid = days.merge(series[SERIES_KEYS].drop_duplicates(), how="cross")
    merged = grid.merge(frame, on=["date", *SERIES_KEYS], how="outer")
    merged["count"] = merged["count"].fillna(0).astype("int64")
    return merged.sort_values(["date", *SERIES_KEYS], ignore_index=True)


def add_calendar(frame: pd.DataFrame) -> pd.DataFrame:
    """``date`` becomes the index; ``weekday`` (Monday 0) and ``month`` (1-12) are added."""
    dates = pd.to_datetime(frame["date"])
    with_calendar = frame.assign(date=dates, weekday=dates.dt.day_of_week, month=dates.dt.month)
    return with_calendar.set_index("date")[FRAME_COLUMNS]


def prepare(
    raw: pd.DataFrame, series: pd.DataFrame | None = None, dates: Iterable | None = None
) -> pd.DataFrame:
    """The whole ETL: regroup, complete the known ``series`` over ``dates`` (default: the
    series and dates present in ``raw``), add the calendar."""
    grouped = regroup(raw)
    known = grouped[SERIES_KEYS] if series is None else series
    days = grouped["date"].unique() if dates is None else dates
    prepared = add_calendar(complete(grouped, known, days))
    log.info(
        "etl: %d rows, %d series, %d days",
        len(prepared),
        len(prepared[SERIES_KEYS].drop_duplicates()),
        prepared.index.nunique(),
    )
    return prepared
