"""The report stage: ``results/<YYYY-MM-DD>/`` with ``scores.csv``, ``summary.json`` and
``histogram.png``. Every file is written to a temporary name and renamed into place, so a
killed run never leaves half a file where a good one stood."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
    "date",
    "channelid",
    "actioncode",
    "os_family",
    "count",
    "expected_low",
    "expected_high",
    "score",
    "is_anomaly",
    "direction",
    "cause",
]
SCORES_FILE, SUMMARY_FILE, HISTOGRAM_FILE = "scores.csv", "summary.json", "histogram.png"
VOLUME_FILE = "volume.png"


def day_dir(results_dir: Path, day: dt.date) -> Path:
    return results_dir / day.isoformat()


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary sibling of ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def worst_first(scored: pd.DataFrame) -> pd.DataFrame:
    """Anomalies first, the largest deviation from the baseline leading; then the rest by
    score, lowest first."""
    size = scored["deviation"].abs().fillna(0.0)
    order = scored.assign(_size=np.where(scored["is_anomaly"], -size, 0.0))
    ranked = order.sort_values(["is_anomaly", "_size", "score"], ascending=[False, True, True])
    return ranked.drop(columns="_size")


def write_scores(folder: Path, scored: pd.DataFrame) -> Path:
    """``scores.csv``: the contract columns, worst first (see :func:`worst_first`)."""
    table = scored.assign(
        date=pd.to_datetime(scored["date"]).dt.strftime("%Y-%m-%d"),
        expected_low=scored["expected_low"].astype("Int64"),
        expected_high=scored["expected_high"].astype("Int64"),
    )
    table = worst_first(table)[SCORE_COLUMNS]
    return write_atomic(
        folder / SCORES_FILE, lambda p: table.to_csv(p, index=False, float_format="%.6g")
    )


def write_summary(folder: Path, summary: dict[str, Any]) -> Path:
    text = json.dumps(summary, indent=2, sort_keys=False, default=str) + "\n"
    return write_atomic(folder / SUMMARY_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def read_scores(results_dir: Path, days: list[dt.date]) -> pd.DataFrame:
    """The ``scores.csv`` rows of those ``days`` that have one (an unreadable file is
    skipped), with ``date`` as timestamps."""
    frames = []
    for day in days:
        try:
            path = day_dir(results_dir, day) / SCORES_FILE
            frames.append(pd.read_csv(path, dtype=TEXT_COLUMNS, **KEEP_TEXT))
        except (OSError, ValueError):
            continue
    if not frames:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    return table.assign(date=pd.to_datetime(table["date"]))


TEXT_COLUMNS = {"channelid": str, "actioncode": str, "os_family": str}
# Labels such as "NA" or "null" stay text; only the empty bounds of a new series are missing.
KEEP_TEXT = {"keep_default_na": False, "na_values": {"expected_low": [""], "expected_high": [""]}}


def read_summary(folder: Path) -> dict[str, Any] | None:
    """The summary of an earlier run of the same day, or None (also when it is unreadable)."""
    try:
        return json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def plot_histogram(
    scores: np.ndarray, path: Path, title: str, contamination: float | None = None
) -> Path:
    """Histogram of decision-function scores: the threshold line at 0, the outlier "heap" left of
    it in red, and a horizontal line at the frequency the contamination share would reach."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, dtype=float)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    bins = _bins_aligned_on_zero(scores, count=min(40, max(10, len(scores) // 5)))
    below = scores < 0
    axes.hist(scores[~below], bins=bins, color="#4c72b0", label="above threshold")
    axes.hist(scores[below], bins=bins, color="#c44e52", label=f"below threshold ({below.sum()})")
    axes.axvline(0.0, color="black", linestyle="--", label="threshold (0)")
    if contamination:
        level = contamination * len(scores)
        axes.axhline(
            level, color="#dd8452", linestyle=":", label=f"contamination {contamination:.0%}"
        )
    axes.set(title=title, xlabel="decision function (lower = more anomalous)", ylabel="rows")
    axes.legend(loc="upper left")
    return save_figure(figure, path, dpi=100)


def plot_volume(daily: pd.DataFrame, path: Path, title: str) -> Path:
    """Daily ``count`` (date index) as a line over the shaded ``expected_low``..
    ``expected_high`` band, the last day marked: how the day compares with the weeks before."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    dates = pd.to_datetime(daily.index)
    axes.fill_between(
        dates, daily["expected_low"].astype(float), daily["expected_high"].astype(float),
        color="#4c72b0", alpha=0.2, label="expected range",
    )  # fmt: skip
    axes.plot(dates, daily["count"], color="#4c72b0", marker=".", label="events")
    axes.plot(dates[-1:], daily["count"].iloc[-1:], "o", color="#c44e52", label="scored day")
    axes.set(title=title, ylabel="events per day")
    axes.set_ylim(bottom=0)
    axes.tick_params(axis="x", rotation=30)
    axes.legend(loc="upper left")
    return save_figure(figure, path, dpi=100)


def save_figure(figure, path: Path, dpi: int) -> Path:
    """Write a matplotlib figure to ``path`` as PNG, atomically, and release it."""
    import matplotlib.pyplot as plt

    try:
        figure.tight_layout()
        write_atomic(path, lambda p: figure.savefig(p, format="png", dpi=dpi))
    finally:  # released even when the file cannot be written: a backfill keeps going
        plt.close(figure)
    return path


def _bins_aligned_on_zero(scores: np.ndarray, count: int) -> np.ndarray:
    """Histogram edges about ``count`` bins wide in all, with 0 on an edge, so no bar
    straddles the threshold."""
    low, high = min(scores.min(initial=0.0), 0.0), max(scores.max(initial=0.0), 0.0)
    width = (high - low) / count or 0.01
    return np.arange(np.floor(low / width), np.ceil(high / width) + 1) * width
