"""Groups of series that move together, each judged against its own history.

The top group of a series is the value of its first dimension (the default monitor: its
channel); with a single dimension, all series of the day. A top group's *move* on a day is the
median of its members' residuals (``log1p(count)`` minus their baselines): a channel that is
15% up as a whole moves about ``log(1.15)``, and one broken member among three or more barely
moves it. What a series does beyond its top group's move is its *own* residual. A sub-group
(channel × action, channel × OS family, …) moves by the median own residual of its members.

Each group's usual range is learnt from its moves over the training days (those within
``EXTREME`` bands of spreads: an incident or an undeclared holiday is not usual): the
``GROUP_QUANTILES`` of its moves, widened by some robust spreads of them (:class:`Widening`)
and never narrower than ``band`` such spreads. A group whose whole channel moves by a fifth now
and then learns that; one whose members never move together learns a narrow range. A group is
outside its range only when it moved further than its history says it does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GROUP_QUANTILES = (0.01, 0.99)
MIN_GROUP_SPREAD = 0.02  # in log1p units: a range is never narrower than ±band × 2%
MIN_TOP_MEMBERS = 3  # a top group's move is a median of at least this many members
MAD_TO_SD = 1.4826
EXTREME = 3  # moves beyond this many bands of spreads are incidents or holidays, not usual
LEFT_OUT_SHARE = 0.25
TREND_DAYS = 29  # a group's slow drift: the rolling median of its moves over this many days


def group_keys(dimensions: list[str]) -> list[tuple[str, ...]]:
    """The groups whose series may move together, top group first: the first dimension alone,
    and with each other dimension (the default monitor: channel, channel × action, channel ×
    OS family); with a single dimension, all series of the day."""
    if len(dimensions) == 1:
        return [()]
    first = dimensions[0]
    return [(first,), *[(first, other) for other in dimensions[1:]]]


def levels(dimensions: list[str]) -> list[tuple[str, ...]]:
    """Every level a group is judged at: with several dimensions, the whole day first (all
    series), then :func:`group_keys`."""
    keys = group_keys(dimensions)
    return keys if keys == [()] else [(), *keys]


@dataclass(frozen=True)
class Widening:
    """How many robust spreads of its moves widen a group's usual range beyond their
    quantiles: ``whole`` for the day and the top groups (channels), whose quantiles already
    hold the business moves they make as a whole (weather, a campaign), and ``sub`` for the
    groups within a channel (channel × action, …), which move apart from their channel only
    when something treats them apart, such as a partial load."""

    whole: float
    sub: float

    def of(self, keys: tuple[str, ...]) -> float:
        return self.whole if len(keys) <= 1 else self.sub


@dataclass
class Moves:
    """Per row: its top group's move, its own residual beyond it, and at each of
    :func:`levels` its group's move that day, the number of the group's members, and the
    row's own part in it (its residual for the day and its top group, its own residual
    below)."""

    top: np.ndarray
    own: np.ndarray
    by_level: list[np.ndarray]
    members: list[np.ndarray]
    mine: list[np.ndarray]
    top_level: int = 0  # the position of the top groups among the levels

    @classmethod
    def none(cls, residual: np.ndarray) -> Moves:
        """No groups: a row's own move is its residual."""
        return cls(np.zeros(len(residual)), residual, [], [], [])


def moves(frame: pd.DataFrame, dimensions: list[str], residual: np.ndarray) -> Moves:
    """The groups' moves of every row of ``frame`` (a ``date`` column and the dimensions),
    given each row's ``residual`` (NaN for a series without a baseline, left out of every
    median)."""
    codes = {key: pd.factorize(frame[key]) for key in ["date", *dimensions]}
    keys = group_keys(dimensions)
    top_group = _day_groups(codes, keys[0])
    top, top_members = _median_per_row(top_group, residual)
    top = np.where(top_members >= MIN_TOP_MEMBERS, top, 0.0)
    own = residual - top
    found = Moves(top, own, [top], [top_members], [residual])
    if keys[0]:
        day_move, day_members = _day_of_top_groups(codes, top_group, top, top_members)
        found.by_level.insert(0, day_move)
        found.members.insert(0, day_members)
        found.mine.insert(0, residual)
        found.top_level = 1
    for sub in keys[1:]:
        move, count = _median_per_row(_day_groups(codes, sub), own)
        found.by_level.append(move)
        found.members.append(count)
        found.mine.append(own)
    return found


def _day_of_top_groups(
    codes: dict, top_group: np.ndarray, top: np.ndarray, members: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the whole day's move, the median of the day's top groups' moves (one channel
    moving alone does not move it), and the number of those groups."""
    first = np.unique(top_group, return_index=True)[1]  # a row of each top group
    counted = members[first] >= MIN_TOP_MEMBERS
    day_of_group = codes["date"][0][first]
    medians, counts = group_medians(day_of_group, np.where(counted, top[first], np.nan))
    day = codes["date"][0]
    return medians[day], counts[day]


def learn_ranges(
    frame: pd.DataFrame, dimensions: list[str], found: Moves, band: float, widening: Widening
) -> tuple[list[list[list[str]]], list[np.ndarray]]:
    """Per level, the groups seen in training (their key values as text) and each one's usual
    range of moves, ``(low, high)``, from the training days in ``frame``; a day on which
    ``LEFT_OUT_SHARE`` or more of a group's rows were left out of training (an incident) does
    not count for the group."""
    names, ranges = [], []
    for keys, move, mine in zip(levels(dimensions), found.by_level, found.mine, strict=True):
        widen = widening.of(keys)
        days = pd.DataFrame({"date": frame["date"].to_numpy(), "move": move})
        for key in keys:
            days[key] = as_text(frame[key]).to_numpy()
        left_out = pd.Series(np.isnan(mine)).groupby([days[k] for k in ["date", *keys]])
        days = days[left_out.transform("mean").to_numpy() < LEFT_OUT_SHARE]
        days = days.dropna(subset=["move"]).drop_duplicates(["date", *keys])
        days["move"] = _day_to_day(days, list(keys))
        by_group = days.groupby(list(keys), observed=True)["move"] if keys else None
        if by_group is None:
            groups = [[]]
            low, high = _usual_range(days["move"].to_numpy(), band, widen)
            bounds = np.array([[low, high]])
        else:
            pairs = by_group.apply(lambda m, w=widen: _usual_range(m.to_numpy(), band, w))
            index = pairs.index if len(keys) > 1 else [(k,) for k in pairs.index]
            groups = [[str(v) for v in key] for key in index]
            bounds = np.array(pairs.tolist(), dtype=float).reshape(-1, 2)
        names.append(groups)
        ranges.append(bounds)
    return names, ranges


def ranges_of_rows(
    frame: pd.DataFrame, dimensions: list[str], names: list, ranges: list
) -> list[np.ndarray]:
    """Per level, each row's group range ``(n, 2)``; NaN for a group unknown to training."""
    per_level = []
    for keys, known, bounds in zip(levels(dimensions), names, ranges, strict=True):
        if not keys:
            per_level.append(np.repeat(bounds[:1], len(frame), axis=0))
            continue
        index = pd.MultiIndex.from_tuples([tuple(k) for k in known], names=list(keys))
        rows = pd.MultiIndex.from_arrays([as_text(frame[k]) for k in keys], names=list(keys))
        position = index.get_indexer(rows)
        bounds = np.vstack([bounds, [np.nan, np.nan]]) if len(bounds) else np.full((1, 2), np.nan)
        per_level.append(bounds[np.where(position >= 0, position, len(bounds) - 1)])
    return per_level


def moved_with_group(
    found: Moves, bounds: list[np.ndarray], spread: np.ndarray, member: float
) -> np.ndarray:
    """Rows whose group, at any level, moved outside its usual range that day, and which
    moved the same way themselves: from their baseline (by ``member`` spreads or more, for a
    group within a channel), and within the group (beyond their channel's move, for a group
    inside a channel). When one of two actions of a channel doubles, the channel's move takes
    part of it, and its other action lies below the channel without having left its baseline:
    it is not named."""
    flagged = np.zeros(len(spread), dtype=bool)
    with np.errstate(invalid="ignore"):
        from_baseline = (found.top + found.own) / spread
    for level, (move, count, bound, part) in enumerate(
        zip(found.by_level, found.members, bounds, found.mine, strict=True)
    ):
        least = member if level > found.top_level else 0.0
        with np.errstate(invalid="ignore"):
            beyond = np.where(move > bound[:, 1], 1, np.where(move < bound[:, 0], -1, 0))
            moved = np.where(np.abs(from_baseline) >= least, np.sign(from_baseline), 0)
        flagged |= (beyond != 0) & (count >= 2) & (moved == beyond) & (np.sign(part) == beyond)
    return flagged


def _day_to_day(days: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each group's daily moves less their rolling median over ``TREND_DAYS``: what the group
    does from one day to the next, without the slow drift of a year of history away from
    today's baselines."""
    ordered = days.sort_values([*keys, "date"])
    moves = ordered["move"]
    by_group = moves.groupby([ordered[k] for k in keys]) if keys else moves.groupby(lambda _: 0)
    trend = by_group.transform(
        lambda m: m.rolling(TREND_DAYS, center=True, min_periods=TREND_DAYS // 4).median()
    )
    return (moves - trend.fillna(0.0)).reindex(days.index)


def _usual_range(moves: np.ndarray, band: float, widen: float) -> tuple[float, float]:
    """A group's usual range: the quantiles of its past moves (leaving out the extreme ones:
    an incident, an undeclared holiday), widened by ``widen`` robust spreads, and at least
    ``band`` spreads around their median."""
    moves = moves[~np.isnan(moves)]
    if len(moves) < 2:
        return (np.nan, np.nan)
    middle = float(np.median(moves))
    spread = max(MAD_TO_SD * float(np.median(np.abs(moves - middle))), MIN_GROUP_SPREAD)
    usual = moves[np.abs(moves - middle) <= EXTREME * band * spread]
    low, high = np.quantile(usual, GROUP_QUANTILES)
    return (
        float(min(low - widen * spread, middle - band * spread)),
        float(max(high + widen * spread, middle + band * spread)),
    )


def _day_groups(codes: dict, keys: tuple[str, ...]) -> np.ndarray:
    """Per row, a number for its date and group (``keys``' values)."""
    group = np.zeros(len(codes["date"][0]), dtype=np.int64)
    for key in ["date", *keys]:
        key_codes, values = codes[key]
        group = group * len(values) + key_codes
    return pd.factorize(group)[0]


def _median_per_row(group: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's median of the non-NaN ``values`` of its group, and their number."""
    medians, counts = group_medians(group, values)
    return medians[group], counts[group]


def group_medians(group: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The median and number of the non-NaN ``values`` of each group ``0..group.max()`` (NaN
    and 0 for a group without any), from one sort of the values by group and value."""
    groups = int(group.max()) + 1 if len(group) else 0
    known = ~np.isnan(values)
    group, values = group[known], values[known]
    counts = np.bincount(group, minlength=groups)
    ordered = values[np.lexsort((values, group))]
    starts = np.cumsum(counts) - counts
    low = np.minimum(starts + (counts - 1) // 2, max(len(ordered) - 1, 0))
    high = np.minimum(starts + counts // 2, max(len(ordered) - 1, 0))
    with np.errstate(invalid="ignore"):
        medians = (ordered[low] + ordered[high]) / 2 if len(ordered) else np.full(groups, np.nan)
    return np.where(counts > 0, medians, np.nan), counts


def as_text(column: pd.Series) -> pd.Series:
    """``column`` as text; a categorical column stays categorical, its categories as text (one
    string per category, not per row)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.rename_categories(column.cat.categories.astype(str))
    return column.astype(str)
