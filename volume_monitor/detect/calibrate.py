"""The false-alert budget: how far from normal a series or a group must be before the day
pages, set on the monitor's own history instead of by hand.

Training scores every day of its window against the baseline that day would have had the
night after (the weeks before it only, as the nightly run does). Per level — the series, the
whole day, the top groups, the groups within them — each day's *evidence* is the largest
distance from normal, in spreads, of any of its series or groups. Each level has its share of
the budget (``budget`` false alert days in 30, shared evenly), and its alert level is the
evidence its normal days pass on that share of them: with a year of days and the default
budget, about the strongest normal day of the year at that level. The levels' tails differ (a
channel that moves as a whole now and then has a long one), and each level learns its own.

Not every day of the window is a normal day. A series or group beyond its level's ``floor`` (a
series' watch range, a group's least alert level) two days in a row or more is an incident:
those days of it are left out of its level's evidence (:func:`in_blocks`), so a long incident
cannot raise the alert levels. A day whose evidence lies beyond ``GROSS`` times its level's
90th percentile is no tail of normal days either (a day that was missing, a holiday nobody
declared). An alert level is never below its floor.

The realised rate is measured held back, each normal day against the alert levels set
without it: the rate at which a new normal day would page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_DAYS = 14  # days of evidence below which the floors stand alone
NORMAL_DAYS = 30  # the budget counts false alert days per this many normal days
SCALE_QUANTILE = 0.9  # a level's scale: this quantile of its days' evidence
MIN_SCALE = 1.0  # in spreads: a level whose days are nearly all quiet is not scaled below it
GROSS = 4.0  # evidence beyond this many scales: an incident or a day not like its weekday


@dataclass(frozen=True)
class Calibration:
    """The alert level of each level (in spreads), the budget it was set for, and what it
    did on the training days held back: how many were counted, and on how many any level
    passed its alert level."""

    alert_levels: tuple[float, ...]
    budget: float
    days: int
    days_over: int

    @property
    def realised(self) -> float:
        """False alert days per ``NORMAL_DAYS`` held-back days at these levels."""
        return NORMAL_DAYS * self.days_over / self.days if self.days else float("nan")

    def words(self) -> str:
        """What the budget is and what it did, for a person: ``alert levels set for about
        one false alert in 60 normal days; 4 in 326 days seen held back in training``."""
        target = f"about one false alert in {NORMAL_DAYS / self.budget:.0f} normal days"
        if not self.days:
            return f"alert levels at their floors (too little history to set them for {target})"
        return (
            f"alert levels set for {target}; {self.days_over} in {self.days} days seen held "
            "back in training"
        )


def in_blocks(unit: np.ndarray, day: np.ndarray, beyond: np.ndarray) -> np.ndarray:
    """Per row (``unit``: its series or group, ``day``: its day number; a group's rows
    repeat its unit and day), whether it is ``beyond`` its floor on a run of two days or
    more of its unit."""
    pair = pd.factorize(unit.astype(np.int64) * (int(day.max(initial=0)) + 2) + day)[0]
    pairs = pd.DataFrame({"pair": pair, "unit": unit, "day": day, "beyond": beyond})
    each = pairs.groupby("pair").agg(unit=("unit", "first"), day=("day", "first"),
                                     beyond=("beyond", "any"))  # fmt: skip
    each = each.sort_values(["unit", "day"])
    u, d, b = (each[c].to_numpy() for c in ("unit", "day", "beyond"))
    follows = np.r_[False, (u[1:] == u[:-1]) & (d[1:] == d[:-1] + 1)]
    with_next = np.r_[follows[1:] & b[1:] & b[:-1], False]
    run = pd.Series(with_next | np.r_[False, with_next[:-1]], index=each.index)
    return run.reindex(pair).to_numpy()


def day_maxima(day: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """Per day (``day``: each row's day code, 0..n-1), the largest non-NaN ``evidence`` of its
    rows; NaN for a day without any."""
    return pd.Series(evidence).groupby(day).max().to_numpy()


def calibrate(evidence: list[np.ndarray], budget: float, floors: list[float]) -> Calibration:
    """Per level (``evidence``: its day maxima; one level or more), its alert level in
    spreads: the evidence its normal days pass on their share of ``budget`` days in
    ``NORMAL_DAYS`` (the budget shared evenly by the levels), never below its ``floor``; and
    the rate realised held back."""
    table = np.column_stack(evidence)
    share = budget / NORMAL_DAYS / table.shape[1]
    levels = []
    normal = np.ones(len(table), dtype=bool)
    over = np.zeros(len(table), dtype=bool)
    for column, floor in zip(table.T, floors, strict=True):
        kept = _normal_days(column)
        levels.append(_level(column[kept], share, floor))
        normal &= kept | np.isnan(column)
        over |= _over_without_itself(column, kept, share, floor)
    seen = normal & ~np.isnan(table).all(axis=1)
    return Calibration(tuple(levels), budget, int(seen.sum()), int((over & seen).sum()))


def _level(normal: np.ndarray, share: float, floor: float) -> float:
    """The evidence ``normal`` days pass on ``share`` of them: the strongest of the days
    beyond the share (so that a new day passes it about as often as the share says, the
    strongest normal day where the share is less than one day), at least ``floor``; the floor
    alone with fewer than ``MIN_DAYS`` days."""
    if len(normal) < MIN_DAYS:
        return float(floor)
    passing = max(1, int(share * len(normal)))  # days left above it: the budget's, at least one
    return float(max(np.sort(normal)[-passing], floor))


def _normal_days(evidence: np.ndarray) -> np.ndarray:
    """Which days of a level's ``evidence`` are normal: known and not beyond ``GROSS`` times
    its ``SCALE_QUANTILE`` (at least ``MIN_SCALE``)."""
    known = ~np.isnan(evidence)
    if not known.any():
        return known
    scale = max(float(np.quantile(evidence[known], SCALE_QUANTILE)), MIN_SCALE)
    with np.errstate(invalid="ignore"):
        return known & (evidence <= GROSS * scale)


def _over_without_itself(
    evidence: np.ndarray, normal: np.ndarray, share: float, floor: float
) -> np.ndarray:
    """Per day, whether its ``evidence`` passes the alert level set on the other ``normal``
    days (only one of the few highest can)."""
    over = np.zeros(len(evidence), dtype=bool)
    values = evidence[normal]
    if len(values) < MIN_DAYS:
        return np.nan_to_num(evidence) > floor
    highest = np.argsort(values)[::-1][: int(share * len(values)) + 3]
    top = np.flatnonzero(normal)[highest]
    for day in top:
        others = evidence[normal & (np.arange(len(evidence)) != day)]
        over[day] = evidence[day] > _level(others, share, floor)
    return over
