"""What a scored row means to a person: its expected range in whole events, which way it
left it, how far (in spreads), and the likely cause."""

from __future__ import annotations

import numpy as np
import pandas as pd

from volume_monitor.detect import groups

DUPLICATE_MULTIPLES = (2, 3)  # a duplicated load: count / m close to the baseline
DUPLICATE_SPREADS = 2.0  # "close": within this many spreads
STALL_RATIO = 0.1  # at most 10% of expected
MAX_EXPECTED = 2.0**53  # the widest expected range: still a whole number in a float


def expected_range(
    center: np.ndarray, spread: np.ndarray, band: float, min_change: float
) -> tuple[np.ndarray, np.ndarray]:
    """The normal range in whole events: ``band`` spreads either side of the baseline,
    and never narrower than ``min_change`` events, so a tiny series does not page over a
    handful of events; a huge band is capped at ``MAX_EXPECTED``. NaN for a series
    unknown to the model."""
    expected = np.expm1(center)
    with np.errstate(over="ignore"):
        wide = np.expm1(center + band * spread)
    low = np.minimum(np.expm1(center - band * spread), expected - min_change)
    high = np.minimum(np.maximum(wide, expected + min_change), MAX_EXPECTED)
    return np.floor(np.maximum(low, 0.0)), np.ceil(high)


def usual_share(found: groups.Moves, bounds: list[np.ndarray]) -> np.ndarray:
    """Per row, the part of its top group's move that day that a series is expected to
    follow: all of it while the group moved within its usual range (a channel up 15% as it
    is now and then), none when it moved outside (the group's move is then what is wrong,
    and normal is the series without it); 0 without groups."""
    if not bounds:
        return np.zeros(len(found.own))
    move, (low, high) = found.top, bounds[found.top_level].T
    with np.errstate(invalid="ignore"):
        usual = (move >= np.where(np.isnan(low), 0.0, low)) & (
            move <= np.where(np.isnan(high), 0.0, high)
        )
    return np.where(usual & ~np.isnan(move), move, 0.0)


def deviation(counts: np.ndarray, center: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Spreads between each count and its baseline (``log1p`` units); NaN for a new series."""
    return (np.log1p(counts) - center) / spread


def direction(counts: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    direction = np.full(len(counts), "", dtype=object)
    direction[counts > high] = "high"
    direction[(counts < low) & (counts > 0)] = "low"
    direction[(counts < low) & (counts == 0)] = "missing"
    return direction


def sign_direction(counts: np.ndarray, deviation: np.ndarray) -> np.ndarray:
    """Direction of a row that moved with its group but stayed inside its own range."""
    return named(
        np.where(counts == 0, 2, np.where(deviation > 0, 0, 1)), ["high", "low", "missing"]
    )


def cause(
    counts: np.ndarray,
    center: np.ndarray,
    spread: np.ndarray,
    direction: np.ndarray,
    anomalous: np.ndarray,
    known: np.ndarray,
    missing_day: np.ndarray,
) -> np.ndarray:
    """The likely cause of each anomalous row, judged against the series' own baseline
    (``center``, not moved with its group: a duplicated load is a multiple of its usual level);
    ``new_series`` for series unseen in training; ``watch`` for a row outside its range that
    does not page (not as far out as the monitor's alert level)."""
    expected = np.expm1(center)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = counts / np.where(expected > 0, expected, np.nan)
    duplicate = np.zeros(len(counts), dtype=bool)
    for multiple in DUPLICATE_MULTIPLES:
        distance = np.abs(np.log1p(counts / multiple) - center)
        duplicate |= distance <= DUPLICATE_SPREADS * spread
    choices = [
        anomalous & missing_day,
        anomalous & (direction == "missing"),
        anomalous & (direction == "low") & (ratio <= STALL_RATIO),
        anomalous & (direction == "low"),
        anomalous & (direction == "high") & duplicate,
        anomalous & (direction == "high"),
        ~known,
        direction != "",
    ]
    names = [
        "missing_day", "missing_series", "stall", "drop", "duplicate", "spike", "new_series",
        "watch",
    ]  # fmt: skip
    return named(np.select(choices, range(1, len(names) + 1), default=0), ["", *names])


NOT_LEARNT_FROM = ("late", "expected")  # causes of rows no baseline is taken from


def usual_rows(scored: pd.DataFrame) -> np.ndarray:
    """The scored rows the next nights' baselines are taken from: inside their range, not
    anomalous, read complete and not an expected event (a day read late keeps only a share
    of its count)."""
    direction = scored["direction"].fillna("").astype(str)
    cause = scored["cause"].fillna("").astype(str)
    anomalous = scored["is_anomaly"].fillna(False).astype(bool)
    return (direction.eq("") & ~anomalous & ~cause.isin(NOT_LEARNT_FROM)).to_numpy()


def named(codes: np.ndarray, names: list[str]) -> np.ndarray:
    """An object array of ``names[code]`` for each code: every row holds one of the few
    ``names`` strings, not a copy of its own (7.3 million rows: 60 MB, not 460 MB)."""
    return np.array(names, dtype=object)[codes]
