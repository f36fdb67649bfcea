"""The benchmark's plots of one detector: ROC curve, score histogram, scores over time, scores
by fault kind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from volume_monitor import plots
from volume_monitor.evaluate.scenarios import NOT_ANOMALIES


def plot_detector(name: str, scored: pd.DataFrame, folder: Path) -> list[Path]:
    """The detector's ROC curve, score histogram, score time series (lowest score per day with
    the threshold and the fault days) and score box plot per fault kind, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    folder.mkdir(parents=True, exist_ok=True)
    truth = ~scored["kind"].isin(NOT_ANOMALIES)
    paths = [
        plots.plot_histogram(
            scored["score"].to_numpy(),
            folder / "histogram.png",
            f"{name}: decision function, all window rows",
        )
    ]
    figure, axes = plt.subplots(figsize=(5, 5))
    false_positive, true_positive, _ = roc_curve(truth, -scored["score"])
    axes.plot(false_positive, true_positive, label=f"{name}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(
        title=f"ROC, series-days (AUC {roc_auc_score(truth, -scored['score']):.3f})",
        xlabel="false positive rate",
        ylabel="true positive rate",
    )
    paths.append(plots.save_figure(figure, dpi=90, path=folder / "roc.png"))
    figure, (flagged, lowest) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for scenario, rows in scored.groupby("scenario"):
        daily = rows.groupby("date").agg(flagged=("is_anomaly", "sum"), lowest=("score", "min"))
        flagged.plot(daily.index, daily["flagged"], label=f"scenario {scenario}")
        lowest.plot(daily.index, daily["lowest"], label=f"scenario {scenario}")
    for axes in (flagged, lowest):
        for day in scored.loc[truth, "date"].unique():
            axes.axvline(day, color="#c44e52", alpha=0.15)
    lowest.axhline(0.0, color="black", linestyle="--", label="threshold")
    flagged.set(title=f"{name}: per day (red: fault days)", ylabel="anomalous series")
    lowest.set(ylabel="lowest score")
    flagged.legend(loc="upper left")
    lowest.tick_params(axis="x", rotation=30)
    paths.append(plots.save_figure(figure, dpi=90, path=folder / "scores_over_time.png"))
    figure, axes = plt.subplots(figsize=(9, 4))
    kinds = ["", *sorted(k for k in scored["kind"].unique() if k)]
    axes.boxplot(
        [scored.loc[scored["kind"] == k, "score"] for k in kinds],
        tick_labels=[k or "normal" for k in kinds],
    )
    axes.axhline(0.0, color="black", linestyle="--")
    axes.set(title=f"{name}: score by fault kind", ylabel="score")
    axes.tick_params(axis="x", rotation=30)
    paths.append(plots.save_figure(figure, dpi=90, path=folder / "scores_by_kind.png"))
    return paths
