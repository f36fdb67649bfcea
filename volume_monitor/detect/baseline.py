"""Each series' baseline: its level per weekday (the median of its recent weeks), its usual
holiday effect, and the robust spread of its own moves.

Levels are in ``log1p(count)`` units. A trend does not drag a level: only the last
``recent_weeks`` observations of each series and weekday count. A holiday's expectation is the
series' level for the weekday moved by its usual holiday effect (learnt against the same
weekday around each past holiday, so a year's trend cancels), or its Sunday level until it has
``MIN_HOLIDAYS`` past holidays.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from volume_monitor.detect.calendar import DAY_KINDS, HOLIDAY

MIN_SPREAD = 0.05  # in log1p units: about ±5% of a large series
MAD_TO_SD = 1.4826
MIN_HOLIDAYS = 3  # past holidays of a series before it has a holiday level of its own


def row_centers(
    center: np.ndarray, effect: np.ndarray, index: np.ndarray, weekday: np.ndarray, days
) -> np.ndarray:
    """Each row's baseline level: its series' ``center`` for its weekday, moved on a holiday
    (``days`` = ``HOLIDAY``) by the series' holiday ``effect``, or its Sunday level where the
    effect is unknown (NaN)."""
    level = center[index, weekday]
    if not (days == HOLIDAY).any():
        return level
    on_holiday = np.where(np.isnan(effect[index]), center[index, 6], level + effect[index])
    return np.where(days == HOLIDAY, on_holiday, level)


def centers(
    series: np.ndarray,
    day: np.ndarray,
    dates: np.ndarray,
    level: np.ndarray,
    n_series: int,
    recent_weeks: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per series and day kind (weekdays, then holidays): the median ``level``
    (``log1p(count)``, NaN for a row left out) of its last ``recent_weeks`` observations, so a
    trend does not drag it; the series median where a weekday was never seen. Also the
    positions of those recent rows."""
    usable = np.flatnonzero(~np.isnan(level))
    rows = usable[latest_rows(series[usable], day[usable], dates[usable], recent_weeks)]
    recent = pd.DataFrame({"s": series[rows], "w": day[rows], "y": level[rows]})
    overall = recent.groupby("s")["y"].median().reindex(range(n_series)).to_numpy()
    by_day = recent.groupby(["s", "w"])["y"].agg(["median", "size"]).unstack("w")
    center = by_day["median"].reindex(index=range(n_series), columns=range(DAY_KINDS))
    return np.where(center.isna(), overall[:, None], center.to_numpy()), rows


def holiday_effects(
    series: np.ndarray, days: np.ndarray, dates: np.ndarray, level: np.ndarray, center
) -> np.ndarray:
    """Per series, the median of its past holidays' levels less the median level of the same
    series on the same weekday one and two weeks either side (so a year's trend cancels);
    NaN for a series with fewer than ``MIN_HOLIDAYS`` such holidays."""
    effect = np.full(len(center), np.nan)
    holidays = np.flatnonzero((days == HOLIDAY) & ~np.isnan(level))
    if not len(holidays):
        return effect
    usual = np.where(days == HOLIDAY, np.nan, level)
    index = pd.MultiIndex.from_arrays([series, pd.to_datetime(dates)])
    nearby = []
    for weeks in (-2, -1, 1, 2):
        shifted = pd.to_datetime(dates[holidays]) + pd.Timedelta(weeks=weeks)
        position = index.get_indexer(pd.MultiIndex.from_arrays([series[holidays], shifted]))
        nearby.append(np.where(position >= 0, usual[position], np.nan))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a holiday with no usual day near
        difference = level[holidays] - np.nanmedian(np.column_stack(nearby), axis=1)
    by_series = pd.Series(difference).groupby(series[holidays]).agg(["median", "count"])
    enough = by_series[by_series["count"] >= MIN_HOLIDAYS]
    effect[enough.index.to_numpy()] = enough["median"].to_numpy()
    return effect


def spreads(
    series: np.ndarray, own: np.ndarray, rows: np.ndarray, center: np.ndarray, n_series: int
) -> np.ndarray:
    """Per series: a robust spread of its own moves over the recent ``rows``, floored by
    Poisson noise and ``MIN_SPREAD``."""
    recent = pd.Series(np.abs(own[rows]))
    mad = recent.groupby(series[rows]).median().reindex(range(n_series)).to_numpy() * MAD_TO_SD
    poisson = 1.0 / np.sqrt(np.expm1(center).mean(axis=1) + 1.0)
    return np.fmax.reduce([mad, poisson, np.full(n_series, MIN_SPREAD)])


def latest_rows(series: np.ndarray, weekday: np.ndarray, dates: np.ndarray, count: int):
    """Positions of the latest ``count`` rows of each series and weekday, by date. Index
    arithmetic on one sort: a year of 20,000 series is 7.3 million rows, and sorting a frame
    of them and taking each group's tail cost 800 MB more than this."""
    order = np.lexsort((dates, weekday, series))  # by series, weekday, date
    group = series[order].astype(np.int64) * DAY_KINDS + weekday[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(order)]
    del group
    end_of_group = np.repeat(ends, ends - starts)
    from_end = end_of_group - np.arange(1, len(order) + 1)  # 0 for a group's latest row
    return order[from_end < count]
