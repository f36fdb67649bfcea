"""A frame of daily counts taken apart for the state store: each distinct series (its key)
and each distinct day gets a code, so millions of rows become a few arrays and the rows for
the database are built a batch at a time, as plain tuples."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from volume_monitor.state.records import COUNT_SOURCES, series_key
from volume_monitor.state.schema import OPTIONAL_COUNT_COLUMNS

FLOAT_COLUMNS = ("expected_low", "expected_high", "score")
BOOL_COLUMNS = ("is_anomaly",)


@dataclass(frozen=True)
class CountFrame:
    """``frame`` with a series code and a day code per row: ``keys[series_codes[i]]`` is the
    key of row ``i``, ``days[day_codes[i]]`` its date (``days`` is sorted)."""

    frame: pd.DataFrame
    keys: list[str]
    series_codes: np.ndarray
    days: list[dt.date]
    day_codes: np.ndarray
    order: np.ndarray  # row positions by series, then day

    def __len__(self) -> int:
        return len(self.frame)

    def columns(self, rows: np.ndarray) -> dict[str, list]:
        """The values of the rows at positions ``rows`` by column (date, dimensions and series
        aside), as Python values with None for every missing one."""
        part = self.frame.iloc[rows]
        values = {"count": part["count"].to_numpy(dtype="int64").tolist()}
        for name in OPTIONAL_COUNT_COLUMNS:
            values[name] = _python_values(part[name]) if name in part else [None] * len(part)
        return values


def take_apart(frame: pd.DataFrame, dimensions: Sequence[str], source: str) -> CountFrame:
    """Check ``frame`` (``date``, the ``dimensions``, ``count``, optional score columns) and
    code its series and days. A caller's mistake raises ValueError."""
    _check(frame, dimensions, source)
    series_codes, keys = _series_codes(frame, list(dimensions))
    day_codes, days = _day_codes(frame["date"])
    order = _key_order(series_codes * len(days) + day_codes)
    return CountFrame(frame, keys, series_codes, days, day_codes, order)


def _key_order(row_keys: np.ndarray) -> np.ndarray:
    """The row positions sorted by key; refuse two rows for one series on one day."""
    order = np.argsort(row_keys, kind="stable")
    if (np.diff(row_keys[order]) == 0).any():
        raise ValueError("the frame has more than one row for a series on a day")
    return order


def _check(frame: pd.DataFrame, dimensions: Sequence[str], source: str) -> None:
    if source not in COUNT_SOURCES:
        raise ValueError(f"source must be one of {', '.join(COUNT_SOURCES)}, not {source!r}")
    required = ["date", *dimensions, "count"]
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise ValueError(f"the frame has no column {', '.join(missing)}")
    empty = [name for name in required if frame[name].isna().any()]
    if empty:
        raise ValueError(f"the frame has missing values in {', '.join(empty)}")


def _series_codes(frame: pd.DataFrame, dimensions: list[str]) -> tuple[np.ndarray, list[str]]:
    """A code per row and the key of each code; labels are compared as strings."""
    if not dimensions:
        return np.zeros(len(frame), dtype=np.int64), [series_key({})]
    grouped = frame.groupby(dimensions, sort=False)
    codes = grouped.ngroup().to_numpy(dtype=np.int64)
    labels = grouped.size().index  # in code order (sort=False: order of first appearance)
    keys = [
        series_key(dict(zip(dimensions, map(str, _as_tuple(values)), strict=True)))
        for values in labels
    ]
    # Labels equal as strings (1 and "1") are one series: renumber codes by key.
    key_codes, unique_keys = pd.factorize(pd.Index(keys, dtype=object))
    return key_codes[codes].astype(np.int64), list(unique_keys)


def _day_codes(dates: pd.Series) -> tuple[np.ndarray, list[dt.date]]:
    """A code per row and the day of each code (a time of day is dropped)."""
    codes, values = pd.factorize(dates)
    day_codes, days = pd.factorize(pd.to_datetime(values).normalize(), sort=True)
    return day_codes[codes].astype(np.int64), [stamp.date() for stamp in days]


def _as_tuple(values: object) -> tuple:
    return values if isinstance(values, tuple) else (values,)


def _python_values(column: pd.Series) -> list:
    """The column's values as Python floats, bools or strings; None where missing."""
    if column.name in FLOAT_COLUMNS:
        array = column.to_numpy(dtype="float64", na_value=np.nan)
        values = array.tolist()
        if np.isnan(array).any():
            values = [None if value != value else value for value in values]
        return values
    values = column.to_numpy(dtype=object, na_value=None).tolist()
    if column.name in BOOL_COLUMNS:
        return [None if value is None else bool(value) for value in values]
    return [None if value is None else str(value) for value in values]
