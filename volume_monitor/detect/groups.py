"""Groups of series that move together, each judged against its own history.

The top group of a series is the value of its first dimension (the default monitor: its
channel); with a single dimension, all series of the day. A top group's *move* on a day is the
median of its members' residuals (``log1p(count)`` minus their baselines): a channel that is
15% up as a whole moves about ``log(1.15)``, and one broken member among three or more barely
moves it. What a series does beyond its top group's move is its *own* residual. A sub-group
(channel × action, channel × OS family, …) moves by the median own residual of its members;
the whole day by the median of its top groups' moves.

Each group learns the centre and robust spread of its moves over the training days it was
not found outside of (:func:`usual_moves`); how many spreads from the centre are still usual is
the alert level of its level, calibrated on the monitor's own history
(:mod:`volume_monitor.detect.calibrate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MIN_GROUP_SPREAD = 0.02  # in log1p units: a group's moves are never thought steadier than ±2%
MIN_TOP_MEMBERS = 3  # a top group's move is a median of at least this many members
FOLLOWED = 0.5  # of its group's move a member made, to be named with the group
MAD_TO_SD = 1.4826
MEDIAN_NOISE = 1.2533  # the spread of the median of n normal moves: this × their spread / √n


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


@dataclass
class Moves:
    """Per row: its top group's move, its own residual beyond it, and at each of
    :func:`levels` its group's move that day, the number of the group's members, the row's
    own part in it (its residual for the day and its top group, its own residual below), and
    how much noisier than usual the group's members are that day (the median of their
    spreads against their typical ones: more than 1 on a day of small counts), how far the
    group moved from its members' baselines (its median residual: for a group within a
    channel, not what it did beyond the channel), and how far its median moves by chance
    alone (its members' spreads: the median of ``n`` moves of spread ``s`` has about
    ``1.25 s / √n``)."""

    top: np.ndarray
    own: np.ndarray
    by_level: list[np.ndarray]
    members: list[np.ndarray]
    mine: list[np.ndarray]
    noise: list[np.ndarray]
    from_baselines: list[np.ndarray]
    chance: list[np.ndarray] = field(default_factory=list)
    top_level: int = 0  # the position of the top groups among the levels

    @classmethod
    def none(cls, residual: np.ndarray) -> Moves:
        """No groups: a row's own move is its residual."""
        return cls(np.zeros(len(residual)), residual, [], [], [], [], [], [])


def moves(
    frame: pd.DataFrame,
    dimensions: list[str],
    residual: np.ndarray,
    spread: np.ndarray,
    typical: np.ndarray,
) -> Moves:
    """The groups' moves of every row of ``frame`` (a ``date`` column and the dimensions),
    given each row's ``residual`` (NaN for a series without a baseline, left out of every
    median), its ``spread`` that day and its series' ``typical`` spread."""
    codes = {key: pd.factorize(frame[key]) for key in ["date", *dimensions]}
    keys = group_keys(dimensions)
    spread = np.where(np.isnan(residual), np.nan, spread)
    noise = spread / typical
    top_group = _day_groups(codes, keys[0])
    top, top_members = _median_per_row(top_group, residual)
    top = np.where(top_members >= MIN_TOP_MEMBERS, top, 0.0)
    top_noise = _median_per_row(top_group, noise)[0]
    top_chance = _chance(top_group, spread)
    own = residual - top
    found = Moves(top, own, [top], [top_members], [residual], [top_noise], [top], [top_chance])
    if keys[0]:
        day_move, day_members, day_noise, day_chance = _day_of_top_groups(
            codes, top_group, top, top_members, top_noise, top_chance
        )
        found.by_level.insert(0, day_move)
        found.members.insert(0, day_members)
        found.mine.insert(0, residual)
        found.noise.insert(0, day_noise)
        found.from_baselines.insert(0, day_move)
        found.chance.insert(0, day_chance)
        found.top_level = 1
    for sub in keys[1:]:
        group = _day_groups(codes, sub)
        move, count = _median_per_row(group, own)
        found.by_level.append(move)
        found.members.append(count)
        found.mine.append(own)
        found.noise.append(_median_per_row(group, noise)[0])
        found.from_baselines.append(_median_per_row(group, residual)[0])
        found.chance.append(_chance(group, spread))
    return found


def _chance(group: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Per row, how far its group's median moves by chance alone: ``MEDIAN_NOISE`` times the
    members' median spread over the square root of their number."""
    typical, count = _median_per_row(group, spread)
    with np.errstate(divide="ignore", invalid="ignore"):
        return MEDIAN_NOISE * typical / np.sqrt(count)


def _day_of_top_groups(
    codes: dict,
    top_group: np.ndarray,
    top: np.ndarray,
    members: np.ndarray,
    noise: np.ndarray,
    chance: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the whole day's move, the median of the day's top groups' moves (one channel
    moving alone does not move it), the number of those groups, their median noise and how
    far their median moves by chance."""
    first = np.unique(top_group, return_index=True)[1]  # a row of each top group
    counted = members[first] >= MIN_TOP_MEMBERS
    day_of_group = codes["date"][0][first]
    medians, counts = group_medians(day_of_group, np.where(counted, top[first], np.nan))
    noises = group_medians(day_of_group, np.where(counted, noise[first], np.nan))[0]
    chances = group_medians(day_of_group, np.where(counted, chance[first], np.nan))[0]
    day = codes["date"][0]
    with np.errstate(divide="ignore", invalid="ignore"):
        by_chance = MEDIAN_NOISE * chances[day] / np.sqrt(counts[day])
    return medians[day], counts[day], noises[day], by_chance


@dataclass(frozen=True)
class UsualMoves:
    """Per level (see :func:`levels`): the groups seen in training (their key values as
    text), and each one's usual move and robust spread of its moves, ``(centre, spread)``."""

    names: list[list[list[str]]]
    moves: list[np.ndarray]


def usual_moves(
    frame: pd.DataFrame, dimensions: list[str], found: Moves, unusual: list[np.ndarray]
) -> UsualMoves:
    """Per level, each group's usual move (the median of its moves over the training days)
    and their robust spread; the group-days in ``unusual`` (per level, per row: the group was
    found outside its range, as in an incident) do not count."""
    names, centres = [], []
    for keys, move, chance, left_out in zip(
        levels(dimensions), found.by_level, found.chance, unusual, strict=True
    ):
        days = pd.DataFrame({"date": frame["date"].to_numpy(), "move": move, "chance": chance})
        for key in keys:
            days[key] = as_text(frame[key]).to_numpy()
        days = days[~left_out].dropna(subset=["move"]).drop_duplicates(["date", *keys])
        if keys:
            stats = days.groupby(list(keys), observed=True)[["move", "chance"]].apply(
                _centre_and_spread
            )
            index = stats.index if len(keys) > 1 else [(k,) for k in stats.index]
            names.append([[str(v) for v in key] for key in index])
            centres.append(np.array(stats.tolist(), dtype=float).reshape(-1, 2))
        else:
            names.append([[]])
            centres.append(np.array([_centre_and_spread(days)], dtype=float))
    return UsualMoves(names, centres)


def _centre_and_spread(days: pd.DataFrame) -> tuple[float, float]:
    """The median of a group's moves and their robust spread, never below what chance alone
    gives its median (a few weeks of moves may have been calm by luck) nor
    ``MIN_GROUP_SPREAD`` (NaN with fewer than two)."""
    values = days["move"].to_numpy(dtype=float)
    known = ~np.isnan(values)
    if known.sum() < 2:
        return (np.nan, np.nan)
    middle = float(np.median(values[known]))
    spread = MAD_TO_SD * float(np.median(np.abs(values[known] - middle)))
    by_chance = float(np.nanmedian(days["chance"].to_numpy(dtype=float)))
    return (middle, float(np.nanmax([spread, by_chance, MIN_GROUP_SPREAD])))


def evidence(found: Moves, usual: list[np.ndarray]) -> list[np.ndarray]:
    """Per level, per row: how many of its spreads (widened by the day's ``noise``) its
    group's move lies from its usual move (NaN for a group unknown to training, or of fewer
    than two members)."""
    out = []
    for move, count, centre, noise in zip(
        found.by_level, found.members, usual, found.noise, strict=True
    ):
        with np.errstate(invalid="ignore"):
            distance = np.abs(move - centre[:, 0]) / (centre[:, 1] * np.fmax(noise, 1.0))
        out.append(np.where(count >= 2, distance, np.nan))
    return out


def usual_ranges(found: Moves, usual: list[np.ndarray], alert_levels: list[float]):
    """Per level, each row's group range that day, ``(low, high)``: its usual move ± the
    level's alert level in its spreads (widened by the day's ``noise``)."""
    ranges = []
    for centre, noise, level in zip(usual, found.noise, alert_levels, strict=True):
        half = level * centre[:, 1] * np.fmax(np.nan_to_num(noise, nan=1.0), 1.0)
        ranges.append(np.column_stack([centre[:, 0] - half, centre[:, 0] + half]))
    return ranges


def ranges_of_rows(
    frame: pd.DataFrame, dimensions: list[str], names: list, ranges: list
) -> list[np.ndarray]:
    """Per level, each row's group values ``(n, 2)`` (a range, or a centre and spread); NaN
    for a group unknown to training."""
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
    moved the same way themselves: from their baseline by ``member`` spreads or more, and
    within the group at least ``FOLLOWED`` of the group's way (beyond their channel's move,
    for a group inside a channel): when half a channel doubles, the channel's median moves
    by half as much, and the other half, which stayed home, is not named for it. A group
    inside a channel must have left its members' baselines that way too: when one of two
    actions of a channel doubles, the channel's move takes part of it, and its other action
    lies below the channel without having left its baselines: it is not named."""
    flagged = np.zeros(len(spread), dtype=bool)
    with np.errstate(invalid="ignore"):
        from_baseline = (found.top + found.own) / spread
        moved = np.where(np.abs(from_baseline) >= member, np.sign(from_baseline), 0)
    for move, count, bound, part, left in zip(
        found.by_level, found.members, bounds, found.mine, found.from_baselines, strict=True
    ):
        with np.errstate(invalid="ignore"):
            beyond = np.where(move > bound[:, 1], 1, np.where(move < bound[:, 0], -1, 0))
            left_way = np.sign(left) == beyond
            followed = (np.sign(part) == beyond) & (np.abs(part) >= FOLLOWED * np.abs(move))
        flagged |= (beyond != 0) & (count >= 2) & (moved == beyond) & followed & left_way
    return flagged


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
