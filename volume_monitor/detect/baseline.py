"""Each series' baseline: its level per weekday (the median of its recent weeks), the effect
of the days that are not like their weekday (holidays, observances), and the robust spread of
its own moves.

Levels are in ``log1p(count)`` units. A trend does not drag a level: only the last
``recent_weeks`` observations of each series and weekday count. A day's effect is learnt
against the same weekday one and two weeks around it, so a year's trend cancels. A named day
(Thanksgiving, Christmas Eve) seen in training has its own effect: its level for the weekday,
moved by what that day did before (nothing, when that was within ``NAMED_EFFECT_SPREADS`` of
its spread). Another public holiday takes the series' usual holiday effect, or its Sunday
level until it has ``MIN_HOLIDAYS`` past holidays.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from volume_monitor.detect.calendar import DAY_KINDS, HOLIDAY

MIN_SPREAD = 0.05  # in log1p units: about ±5% of a large series
MAD_TO_SD = 1.4826
MIN_HOLIDAYS = 3  # past holidays of a series before it has a holiday level of its own
NAMED_EFFECT_SPREADS = 2.0  # a named day's past effect within this many spreads: none
NAMED_SHARE = 0.5  # of the series a named day moved, for it to have an effect of its own
MIN_RECENT = 4  # kept recent observations of a series and weekday that replace its level
MIN_PRIOR = 2  # observations of a series and day kind before a training day has a baseline
KIN_DAYS = 28  # the weight of a series' kin in its spread, in days of its own


@dataclass(frozen=True)
class DayEffects:
    """Per series: the usual effect of a public holiday (NaN: unknown), whether a holiday
    takes it from the series' Sunday level rather than its weekday's, and per day name the
    effect of that day (NaN: never seen)."""

    holiday: np.ndarray
    like_sunday: np.ndarray
    named: dict[str, np.ndarray]


def row_centers(
    center: np.ndarray,
    effects: DayEffects,
    index: np.ndarray,
    weekday: np.ndarray,
    days: np.ndarray,
    names: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's baseline level: its series' ``center`` for its weekday, moved on the days
    not like their weekday (see :func:`on_special_days`)."""
    return on_special_days(center[index, weekday], center[index, 6], effects, index, days, names)


def on_special_days(
    level: np.ndarray,
    sunday: np.ndarray,
    effects: DayEffects,
    index: np.ndarray,
    days: np.ndarray,
    names: np.ndarray | None,
) -> np.ndarray:
    """Each row's weekday ``level`` (its series ``index``), moved on the days not like their
    weekday. A public holiday (``days`` = ``HOLIDAY``) starts from the weekday level, or from
    the ``sunday`` level for a series whose holidays are like Sundays, and is moved by its
    own effect where its name (``names``) is known, else by the series' usual holiday
    effect; where neither is known, it is the Sunday level. Another named day is its weekday
    level moved by its own effect, where known."""
    holiday = days == HOLIDAY
    moved = level.copy()
    effect = np.full(len(level), np.nan)
    if names is not None and effects.named:
        for name in set(names[names != ""]) & set(effects.named):
            rows = np.flatnonzero(names == name)
            effect[rows] = effects.named[name][index[rows]]
    other = ~holiday & ~np.isnan(effect)
    moved[other] = level[other] + effect[other]
    if holiday.any():
        effect = np.where(np.isnan(effect), effects.holiday[index], effect)
        start = np.where(effects.like_sunday[index], sunday, level)
        moved = np.where(holiday, np.where(np.isnan(effect), sunday, start + effect), moved)
    return moved


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


def recentred(
    center: np.ndarray,
    series: np.ndarray,
    day: np.ndarray,
    dates: np.ndarray,
    level: np.ndarray,
    recent_weeks: int,
) -> np.ndarray:
    """``center`` (series × weekday) with each weekday level taken again from the recent
    days the store kept: the median ``level`` of the last ``recent_weeks`` kept observations
    of the series and weekday (NaN: left out, such as a day that alerted), where there are at
    least ``MIN_RECENT`` of them; elsewhere the trained level stays. So a level follows the
    season between two trainings, and a fault the nightly run caught does not drag it."""
    usable = np.flatnonzero(~np.isnan(level) & (series >= 0) & (day < HOLIDAY))
    if not len(usable):
        return center
    rows = usable[latest_rows(series[usable], day[usable], dates[usable], recent_weeks)]
    recent = pd.DataFrame({"s": series[rows], "w": day[rows], "y": level[rows]})
    found = recent.groupby(["s", "w"])["y"].agg(["median", "size"])
    found = found[found["size"] >= min(MIN_RECENT, recent_weeks)]
    updated = center.copy()
    updated[found.index.get_level_values("s"), found.index.get_level_values("w")] = found["median"]
    return updated


def holiday_effects(
    series: np.ndarray,
    days: np.ndarray,
    dates: np.ndarray,
    level: np.ndarray,
    kinship: np.ndarray,
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per series: the median of its past public holidays' differences (see
    :func:`differences`), against the same weekday around them or against the Sundays around
    them, whichever varies less from one holiday to the next over the series of its kin
    (``kinship``: per series, its top group; commuters' holidays are Sundays, a shop's may be
    its weekday less a share); NaN for a series with fewer than ``MIN_HOLIDAYS`` of them. And
    which of the two it took."""
    n_series = len(kinship)
    effect, like_sunday = np.full(n_series, np.nan), np.zeros(n_series, dtype=bool)
    holiday = days == HOLIDAY
    rows = np.flatnonzero(holiday & ~np.isnan(level))
    if not len(rows):
        return effect, like_sunday
    medians, spreads = [], []
    for sunday in (False, True):
        difference = pd.Series(differences(series, holiday, dates, level, rows, sunday, reference))
        by_series = difference.groupby(series[rows])
        medians.append(by_series.median().reindex(range(n_series)).to_numpy())
        spread = (difference - by_series.transform("median")).abs().groupby(series[rows]).median()
        spreads.append(spread.reindex(range(n_series)).fillna(0.0).to_numpy())
    counts = np.bincount(series[rows], minlength=n_series)
    by_kin = pd.DataFrame({"kin": kinship, "weekday": spreads[0], "sunday": spreads[1]})
    totals = by_kin.groupby("kin")[["weekday", "sunday"]].transform("sum")
    like_sunday = (totals["sunday"] < totals["weekday"]).to_numpy()
    effect = np.where(like_sunday, medians[1], medians[0])
    return np.where(counts >= MIN_HOLIDAYS, effect, np.nan), like_sunday


def named_effects(
    series: np.ndarray,
    names: np.ndarray,
    days: np.ndarray,
    dates: np.ndarray,
    level: np.ndarray,
    spread: np.ndarray,
    usual: DayEffects,
    reference: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per day name, per series: the median difference of its past days of that name (see
    :func:`differences`; a public holiday's from where the series' holidays start, its
    weekday or its Sundays). Where that lies within ``NAMED_EFFECT_SPREADS`` of the series'
    ``spread`` of what such a day takes anyway (a public holiday: the series' ``usual``
    holiday effect; another day: none), that instead. NaN for a series without one. A name
    that did not move the day as a whole (:func:`_day_as_a_whole`) has no effect of its
    own."""
    rows = np.flatnonzero((names != "") & ~np.isnan(level))
    if not len(rows):
        return {}
    public = days[rows] == HOLIDAY
    like_sunday = public & usual.like_sunday[series[rows]]
    special = (names != "") | (days == HOLIDAY)
    difference = differences(series, special, dates, level, rows, like_sunday, reference)
    found = pd.DataFrame(
        {"name": names[rows], "s": series[rows], "d": difference, "public": public}
    )
    medians = found.groupby(["name", "s"]).agg(d=("d", "median"), public=("public", "any"))
    effects = {}
    for name, of_name in medians.groupby(level="name"):
        effect = np.full(len(spread), np.nan)
        effect[of_name.index.get_level_values("s")] = of_name["d"].to_numpy()
        anyway = np.zeros(len(spread))
        if of_name["public"].any():
            anyway = np.where(np.isnan(usual.holiday), effect, usual.holiday)
        beyond = np.nan_to_num(effect - anyway) / spread
        if not _day_as_a_whole(beyond):
            continue
        effects[str(name)] = np.where(np.abs(beyond) < NAMED_EFFECT_SPREADS, anyway, effect)
    return effects


def _day_as_a_whole(beyond: np.ndarray) -> bool:
    """Whether a named day moved the day as a whole: at least ``NAMED_SHARE`` of the series
    went one way by ``NAMED_EFFECT_SPREADS`` (``beyond``: each one's move in its spreads).
    By chance alone, a few small series of a day no one treats apart would."""
    up = (beyond >= NAMED_EFFECT_SPREADS).mean()
    down = (beyond <= -NAMED_EFFECT_SPREADS).mean()
    return bool(max(up, down) >= NAMED_SHARE)


def differences(
    series: np.ndarray,
    special: np.ndarray,
    dates: np.ndarray,
    level: np.ndarray,
    rows: np.ndarray,
    like_sunday: np.ndarray | bool = False,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """For each of ``rows``: its ``level`` less the median ``reference`` level (default: the
    same) of the same series on the same weekday one and two weeks either side
    (``like_sunday``: on the two Sundays either side), leaving out the ``special`` days (NaN
    where there is none)."""
    usual = np.where(special, np.nan, level if reference is None else reference)
    index = pd.MultiIndex.from_arrays([series, pd.to_datetime(dates)])
    days = pd.to_datetime(dates[rows])
    to_sunday = (6 - days.day_of_week).to_numpy()  # 0 on a Sunday
    like_sunday = np.broadcast_to(like_sunday, len(rows))
    nearby = []
    for slot, weeks in enumerate((-2, -1, 1, 2)):
        sunday_offset = np.where(to_sunday == 0, 7 * weeks, to_sunday + 7 * (slot - 2))
        offset = np.where(like_sunday, sunday_offset, 7 * weeks)
        shifted = days + pd.to_timedelta(offset, unit="D")
        position = index.get_indexer(pd.MultiIndex.from_arrays([series[rows], shifted]))
        nearby.append(np.where(position >= 0, usual[position], np.nan))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a day with no usual day near
        return level[rows] - np.nanmedian(np.column_stack(nearby), axis=1)


def spreads(
    series: np.ndarray, own: np.ndarray, counts: np.ndarray, kinship: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per series: its typical spread, and the part of it beyond counting noise. The typical
    spread is the robust spread of its own moves (their median absolute size × 1.4826) over
    every training day that has a baseline before it, never below the Poisson noise of its
    counts nor ``MIN_SPREAD``; taken over the whole window and over all rows, the unusual ones
    included, it is neither narrowed by leaving the wide days out nor widened by a few weeks of
    an incident. What it holds beyond the Poisson noise (``1 / (count + 1)`` in log units,
    squared) is the series' own: a day expected at a third of the usual count is noisier by
    its counts alone (see :func:`row_spreads`). That part is drawn towards the median of its
    kin's (``kinship``: per series, its top group) as if they had ``KIN_DAYS`` days of their
    own: four weeks of history make a poor spread, a year a good one."""
    n_series = len(kinship)
    known = ~np.isnan(own)
    by_series = pd.Series(np.abs(own[known])).groupby(series[known])
    mad = np.nan_to_num(by_series.median().reindex(range(n_series)).to_numpy() * MAD_TO_SD)
    seen = by_series.size().reindex(range(n_series)).fillna(0).to_numpy()
    poisson = pd.Series(1.0 / (counts + 1.0)).groupby(series).mean()
    poisson = poisson.reindex(range(n_series)).fillna(1.0).to_numpy()
    extra = np.maximum(mad**2 - poisson, 0.0)
    kin = pd.Series(np.where(seen > 0, extra, np.nan)).groupby(kinship).transform("median")
    kin = np.nan_to_num(kin.to_numpy())
    extra = np.sqrt((seen * extra + KIN_DAYS * kin) / (seen + KIN_DAYS))
    typical = np.maximum(np.sqrt(extra**2 + poisson), MIN_SPREAD)
    return typical, extra


def row_spreads(extra: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Each row's spread: its series' ``extra`` spread with the Poisson noise of its
    ``expected`` count, never below ``MIN_SPREAD``."""
    with np.errstate(invalid="ignore"):
        return np.maximum(np.sqrt(extra**2 + 1.0 / (np.maximum(expected, 0.0) + 1.0)), MIN_SPREAD)


def prior_levels(
    series: np.ndarray, day: np.ndarray, dates: np.ndarray, level: np.ndarray, weeks: int
) -> np.ndarray:
    """Per row: the median ``level`` of the last ``weeks`` observations of its series and day
    kind before its date, those left out (NaN) skipped; NaN with fewer than ``MIN_PRIOR``.
    The baseline each training day would have had, had it been scored the night after: what
    scoring sees, so what calibration measures."""
    n = len(level)
    order = np.lexsort((dates, day, series))
    group = series[order].astype(np.int64) * DAY_KINDS + day[order]
    ordered = level[order]
    kept = ~np.isnan(ordered)
    kept_at = np.flatnonzero(kept)
    medians = rolling_medians(group[kept_at], ordered[kept_at], weeks, MIN_PRIOR)
    last = np.cumsum(kept) - kept - 1  # the last kept row before each row, among kept rows
    usable = last >= 0
    usable[usable] = group[kept_at[last[usable]]] == group[usable]
    found = np.full(n, np.nan)
    found[usable] = medians[last[usable]]
    out = np.empty(n)
    out[order] = found
    return out


def rolling_medians(group: np.ndarray, values: np.ndarray, window: int, least: int) -> np.ndarray:
    """``values`` sorted by ``group`` (each group's rows together, in order): per row, the
    median of the last ``window`` values of its group up to it; NaN with fewer than
    ``least``. One rolling pass over all rows, the first rows of each group apart."""
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else group
    counts = np.diff(np.r_[starts, len(group)])
    position = np.arange(len(group)) - np.repeat(starts, counts)
    out = pd.Series(values).rolling(window).median().to_numpy(copy=True)
    for p in range(min(window - 1, int(position.max(initial=0)) + 1)):
        rows = np.flatnonzero(position == p)
        if p + 1 < least:
            out[rows] = np.nan
        else:
            out[rows] = np.median(values[rows[:, None] - np.arange(p + 1)], axis=1)
    return out


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
