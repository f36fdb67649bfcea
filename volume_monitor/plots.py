"""The plots of a scored day: the decision-function histogram, the volume of the worst
series against its expected range, and the outlier model's decision boundary. Figures are
built without pyplot's global state, so monitors scored in parallel threads never draw on each
other's figure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from volume_monitor.files import write_atomic


def load_backend():
    """matplotlib's ``Figure`` and Agg canvas classes, imported on first use (about 0.6 s): a
    caller may load them in a thread while it waits on something else."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return Figure, FigureCanvasAgg


def new_figure(width: float, height: float):
    """A figure with one axes, on the Agg canvas, owned by the caller alone."""
    Figure, FigureCanvasAgg = load_backend()
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def plot_histogram(
    scores: np.ndarray, path: Path, title: str, contamination: float | None = None
) -> Path:
    """Histogram of decision-function scores: the threshold line at 0, the outlier "heap" left of
    it in red, and a horizontal line at the frequency the contamination share would reach."""
    scores = np.asarray(scores, dtype=float)
    figure, axes = new_figure(8, 4.5)
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
    axes.set(xlabel="decision function (lower = more anomalous)", ylabel="rows")
    set_title(axes, title)
    axes.legend(loc="upper left")
    return save_figure(figure, path, dpi=100)


def plot_volume(daily: pd.DataFrame, path: Path, title: str) -> Path:
    """Daily ``count`` (date index) as a line over the shaded ``expected_low``..
    ``expected_high`` band, the last day marked: how the day compares with the weeks before."""
    figure, axes = new_figure(8, 4)
    dates = pd.to_datetime(daily.index)
    axes.fill_between(
        dates, daily["expected_low"].astype(float), daily["expected_high"].astype(float),
        color="#4c72b0", alpha=0.2, label="expected range",
    )  # fmt: skip
    axes.plot(dates, daily["count"], color="#4c72b0", marker=".", label="events")
    axes.plot(dates[-1:], daily["count"].iloc[-1:], "o", color="#c44e52", label="scored day")
    axes.set(ylabel="events per day")
    set_title(axes, title)
    axes.set_ylim(bottom=0)
    axes.tick_params(axis="x", rotation=30)
    axes.legend(loc="upper left")
    return save_figure(figure, path, dpi=100)


DEVIATION_CLIP = 20.0  # spreads: the histogram and box plot show larger deviations at the edge
BOX_GROUPS = 12  # values of the first dimension with a box of their own


def plot_deviations(scored: pd.DataFrame, dimension: str, path: Path, title: str) -> Path:
    """How far the training rows lie from their baselines, in spreads: a histogram of all of
    them, and a box plot per value of ``dimension`` (the ``BOX_GROUPS`` largest)."""
    Figure, FigureCanvasAgg = load_backend()
    figure = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    deviation = scored["deviation"].astype(float).clip(-DEVIATION_CLIP, DEVIATION_CLIP)
    known = deviation.notna()
    left.hist(deviation[known], bins=60, color="#4c72b0")
    left.set(xlabel="deviation from the baseline (spreads)", ylabel="rows", yscale="log")
    groups = scored.loc[known, dimension].astype(str)
    largest = groups.value_counts().index[:BOX_GROUPS]
    right.boxplot([deviation[known][groups == g] for g in largest], showfliers=True,
                  flierprops={"markersize": 2})  # fmt: skip
    right.set_xticks(range(1, len(largest) + 1), [str(g) for g in largest], rotation=30)
    right.set(ylabel="deviation (spreads)", xlabel=dimension)
    figure.suptitle(" ".join(title.split()), parse_math=False)
    return save_figure(figure, path, dpi=100)


BOUNDARY_GRID = 150  # points a side of the grid the decision function is drawn on
BOUNDARY_PAD = 0.1  # the grid reaches this share of each feature's range beyond its points


def boundary_grid(
    decision, points: np.ndarray, size: int = BOUNDARY_GRID
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decision function over a ``size`` × ``size`` grid of the two features (deviation
    in spreads, expected level) covering ``points`` and a margin: its x and y values, and the
    decision values (rows: y, columns: x)."""
    low, high = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    margin = np.maximum((high - low) * BOUNDARY_PAD, 0.5)
    xs = np.linspace(low[0] - margin[0], high[0] + margin[0], size)
    ys = np.linspace(low[1] - margin[1], high[1] + margin[1], size)
    grid_x, grid_y = np.meshgrid(xs, ys)
    values = decision(np.column_stack([grid_x.ravel(), grid_y.ravel()]))
    return xs, ys, np.asarray(values, dtype=float).reshape(grid_x.shape)


def plot_boundary(
    decision,
    training: np.ndarray,
    path: Path,
    title: str,
    day: np.ndarray | None = None,
    anomalous: np.ndarray | None = None,
) -> Path:
    """The outlier model's decision function over its two features as filled contours, the
    0 line (below it: outliers) in black, the ``training`` rows in grey and the ``day``'s
    rows on top, its ``anomalous`` ones in red."""
    shown = training if day is None or not len(day) else np.vstack([training, day])
    xs, ys, values = boundary_grid(decision, shown)
    figure, axes = new_figure(8, 5.5)
    limit = max(float(np.abs(values).max()), 1e-9)
    filled = axes.contourf(xs, ys, values, levels=20, cmap="RdBu", vmin=-limit, vmax=limit)
    figure.colorbar(filled, ax=axes, label="decision function (lower = more anomalous)")
    axes.contour(xs, ys, values, levels=[0.0], colors="black", linewidths=1.5)
    axes.scatter(
        training[:, 0], training[:, 1], s=4, c="#555555", alpha=0.35, label="training rows"
    )
    if day is not None and len(day):
        flagged = np.zeros(len(day), dtype=bool) if anomalous is None else np.asarray(anomalous)
        axes.scatter(day[~flagged, 0], day[~flagged, 1], s=22, facecolors="none",
                     edgecolors="#1f4e8c", label="the day's rows")  # fmt: skip
        axes.scatter(day[flagged, 0], day[flagged, 1], s=28, c="#d62728",
                     label=f"the day's anomalies ({int(flagged.sum())})")  # fmt: skip
    axes.plot([], [], color="black", label="decision function = 0")
    axes.set(xlabel="deviation from the baseline (spreads)", ylabel="expected level (log1p count)")
    set_title(axes, title)
    axes.legend(loc="upper left", fontsize="small")
    return save_figure(figure, path, dpi=100)


def set_title(axes, title: str) -> None:
    """``title`` shown as it is: on one line, ``$`` never read as math (a segment named
    ``$x^$`` would otherwise stop the figure from being drawn)."""
    axes.set_title(" ".join(title.split()), parse_math=False)


def save_figure(figure, path: Path, dpi: int) -> Path:
    """Write a matplotlib figure to ``path`` as PNG, atomically, and release it (a pyplot
    figure is closed; one from :func:`new_figure` is simply dropped)."""
    try:
        figure.tight_layout()
        write_atomic(path, lambda p: figure.savefig(p, format="png", dpi=dpi))
    finally:  # released even when the file cannot be written: a backfill keeps going
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(figure)
    return path


def _bins_aligned_on_zero(scores: np.ndarray, count: int) -> np.ndarray:
    """Histogram edges about ``count`` bins wide in all, with 0 on an edge, so no bar
    straddles the threshold."""
    low, high = min(scores.min(initial=0.0), 0.0), max(scores.max(initial=0.0), 0.0)
    width = (high - low) / count or 0.01
    return np.arange(np.floor(low / width), np.ceil(high / width) + 1) * width
