"""The labeled benchmark: demo histories with every kind of fault a real pipeline has, injected
at known days and series in a held-back window, scored day by day by each detector.

Metrics: precision, recall and F1 at the series-day level and at the day level, ROC-AUC of the
score (lower = more anomalous) and of the size of the deviation (how anomalies are ranked),
false alerts per 30 normal days, missing days and stopped series caught, and new-channel series
paged (which should be none: a new channel is reported, not an anomaly).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from volume_monitor import etl, plots
from volume_monitor.demo import DemoSpec, Fault, expected_counts
from volume_monitor.model import SEED_PARAMS, VolumeDetector

log = logging.getLogger(__name__)

LAST_DAY = dt.date(2026, 6, 30)
NOT_ANOMALIES = ("", "new_channel")
DETECTORS: dict[str, dict[str, Any]] = {
    "seed": {"features": "seed", **SEED_PARAMS},
    "iforest_baseline_groups": {},
    "ocsvm_baseline_groups": {"method": "ocsvm"},
    "lof_baseline_groups": {"method": "lof"},
    "iforest_baseline": {"group_threshold": 0.0},
    "zscore_mad": {"method": "zscore", "group_threshold": 0.0},
}


@dataclass(frozen=True)
class Scenario:
    """A history of daily counts per series (rows with count 0 left out, as a query returns
    them), the held-back window, and one label per faulty series-day."""

    counts: pd.DataFrame
    window_start: pd.Timestamp
    last_day: pd.Timestamp
    labels: pd.DataFrame


SELF_BENCHMARK_DAYS = 56  # the faults' schedule spans 49 days of the window
MIN_SELF_HISTORY = 28  # days before the window to fit on


def make_scenario(seed: int, days: int = 400, held_back: int = 60, events_per_day: int = 20_000):
    """A seeded demo history with each fault kind injected once in the last ``held_back``
    days."""
    spec = DemoSpec(LAST_DAY, days=days, events_per_day=events_per_day, seed=seed, faults=[])
    rng = np.random.default_rng(seed)
    counts = rng.poisson(expected_counts(spec, rng))
    dates = pd.date_range(LAST_DAY - dt.timedelta(days=days - 1), periods=days)
    history = pd.DataFrame(
        [
            (date, *series[:3], int(count))
            for date, row in zip(dates, counts, strict=True)
            for series, count in zip(spec.series, row, strict=True)
        ],
        columns=["date", *etl.SERIES_KEYS, "count"],
    )
    return inject_scenario(history, rng, held_back)


def inject_scenario(history: pd.DataFrame, rng: np.random.Generator, held_back: int) -> Scenario:
    """``history`` (one row per date and series) with one fault of each kind injected in its
    last ``held_back`` days, and a new channel appearing near the end."""
    dates = pd.DatetimeIndex(sorted(history["date"].unique()))
    window, last = dates[-held_back], dates[-1]
    shares = history.groupby(etl.SERIES_KEYS)["count"].mean()
    series = [(*keys, share) for keys, share in shares.items()]
    faults = _schedule(rng, series, window.date())
    counts = _apply(history, faults)
    new = _new_channel(rng, last.date() - dt.timedelta(days=5), last.date())
    labels = pd.concat(
        [
            _labels(series, faults),
            new.assign(kind="new_channel")[["date", *etl.SERIES_KEYS, "kind"]],
        ]
    )
    counts = pd.concat([counts[counts["count"] > 0], new], ignore_index=True)
    return Scenario(counts, window, last, labels)


def self_benchmark(history: pd.DataFrame, params: dict[str, Any], seed: int = 0) -> dict:
    """The benchmark metrics of a configuration on faults injected into the last
    ``SELF_BENCHMARK_DAYS`` of a real training history (fitted on the days before); empty when
    the history is too short."""
    if history["date"].nunique() < SELF_BENCHMARK_DAYS + MIN_SELF_HISTORY:
        log.info("evaluate: history too short for the self-benchmark; skipped")
        return {}
    scenario = inject_scenario(history, np.random.default_rng(seed), SELF_BENCHMARK_DAYS)
    return metrics(score_scenario(params, scenario).assign(scenario=seed))


def _apply(history: pd.DataFrame, faults: list[Fault]) -> pd.DataFrame:
    """``history`` with each fault's factor applied to the counts of its date and series."""
    counts = history["count"].to_numpy(dtype=float).copy()
    for fault in faults:
        match = (history["date"] == pd.Timestamp(fault.date)).to_numpy()
        for key, wanted in zip(etl.SERIES_KEYS, _wanted(fault), strict=True):
            if wanted is not None:
                match = match & (history[key] == wanted).to_numpy()
        counts[match] = np.round(counts[match] * fault.factor)
    return history.assign(count=counts.astype("int64"))


def _wanted(fault: Fault) -> tuple[str | None, str | None, str | None]:
    return fault.channelid, fault.actioncode, fault.os_family


def _schedule(rng: np.random.Generator, series: list[tuple], window: dt.date) -> list[Fault]:
    """One fault of each kind, about a week apart, on busy series drawn at random."""
    median_share = np.median([s[3] for s in series])
    busy = [s[:3] for s in series if s[3] >= median_share]
    channel, action, _ = busy[rng.integers(len(busy))]
    stalled, stopped = busy[rng.integers(len(busy))], busy[rng.integers(len(busy))]
    channels = sorted({s[0] for s in series})
    duplicated, leaking = (
        channels[rng.integers(len(channels))],
        channels[rng.integers(len(channels))],
    )

    def day(offset: int) -> dt.date:
        return window + dt.timedelta(days=offset)

    return [
        Fault(day(5), "duplicate", 2.0, channelid=duplicated),
        Fault(day(12), "partial_duplicate", 1.3, channelid=channel, actioncode=action),
        Fault(day(19), "stall", 0.05, channelid=stalled[0], os_family=stalled[2]),
        Fault(day(26), "stopped", 0.0, *stopped),
        Fault(day(33), "missing_day", 0.0),
        *[Fault(day(40 + k), "leak", 1.0 - 0.4 * k / 6, channelid=leaking) for k in range(7)],
        Fault(day(48), "holiday", 0.6),
    ]


def _labels(series: list[tuple], faults: list[Fault]) -> pd.DataFrame:
    """One row per faulty series-day. A leak day counts once the drop reaches 20%."""
    rows = []
    for fault in faults:
        if fault.kind == "leak" and fault.factor > 0.8:
            continue
        for keys in series:
            if all(w is None or w == v for w, v in zip(_wanted(fault), keys[:3], strict=True)):
                rows.append((pd.Timestamp(fault.date), *keys[:3], fault.kind))
    return pd.DataFrame(rows, columns=["date", *etl.SERIES_KEYS, "kind"])


def _new_channel(rng: np.random.Generator, start: dt.date, end: dt.date) -> pd.DataFrame:
    """A channel that appears at ``start``: reported as new, never paged as an anomaly."""
    dates = pd.date_range(start, end)
    rows = [
        (date, "partner", action, family, int(rng.poisson(base)))
        for date in dates
        for action, family, base in (("view", "Other", 300), ("search", "Linux", 80))
    ]
    return pd.DataFrame(rows, columns=["date", *etl.SERIES_KEYS, "count"])


def score_scenario(params: dict[str, Any], scenario: Scenario) -> pd.DataFrame:
    """Fit on the history before the window, score every window day; one row per series-day
    with ``kind`` (the injected fault, or empty) beside the detector's verdict."""
    history = scenario.counts[scenario.counts["date"] < scenario.window_start]
    train = etl.add_calendar(etl.complete(history, history, history["date"].unique()))
    detector = VolumeDetector(**params).fit(train)
    window = scenario.counts[scenario.counts["date"] >= scenario.window_start]
    days = pd.date_range(scenario.window_start, scenario.last_day)
    scored = detector.score(etl.add_calendar(etl.complete(window, detector.series_frame, days)))
    labeled = scored.merge(scenario.labels, on=["date", *etl.SERIES_KEYS], how="left")
    return labeled.assign(kind=labeled["kind"].fillna(""))


def metrics(scored: pd.DataFrame) -> dict[str, float]:
    """Benchmark metrics of one detector's scored window(s)."""
    truth = ~scored["kind"].isin(NOT_ANOMALIES)
    flagged = scored["is_anomaly"].astype(bool)
    days = scored.assign(truth=truth, flagged=flagged).groupby(["scenario", "date"])
    day_truth, day_alert = days["truth"].any(), days["flagged"].any()
    normal_days = int((~day_truth).sum())
    stopped = scored["kind"] == "stopped"
    missing = scored[scored["kind"] == "missing_day"].groupby(["scenario", "date"])["is_anomaly"]
    return {
        **_prf("series_", truth, flagged),
        **_prf("day_", day_truth, day_alert),
        "roc_auc": _auc(truth, -scored["score"]),
        "deviation_roc_auc": _auc(truth, scored["deviation"].abs().fillna(0.0)),
        "false_alerts_per_30_days": 30.0
        * float((day_alert & ~day_truth).sum())
        / max(normal_days, 1),
        "missing_days_caught": float(missing.any().mean()) if len(missing) else float("nan"),
        "stopped_series_caught": float(flagged[stopped].mean()) if stopped.any() else float("nan"),
        "new_channel_paged": float(flagged[scored["kind"] == "new_channel"].sum()),
    }


def _auc(truth: pd.Series, ranking: pd.Series) -> float:
    """ROC-AUC of ``ranking`` (higher = more anomalous); NaN without any fault."""
    return float(roc_auc_score(truth, ranking)) if truth.any() else float("nan")


def _prf(prefix: str, truth: pd.Series, flagged: pd.Series) -> dict[str, float]:
    hits = float((truth & flagged).sum())
    precision = hits / max(float(flagged.sum()), 1.0)
    recall = hits / max(float(truth.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {f"{prefix}precision": precision, f"{prefix}recall": recall, f"{prefix}f1": f1}


def run_benchmark(
    seeds: tuple[int, ...] = (1, 2, 3), detectors: dict[str, dict[str, Any]] | None = None
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Score every detector on the scenarios of ``seeds``; returns the detectors × metrics
    table and each detector's scored series-days."""
    detectors = DETECTORS if detectors is None else detectors
    scenarios = {seed: make_scenario(seed) for seed in seeds}
    scored_by_detector = {}
    for name, params in detectors.items():
        scored_by_detector[name] = pd.concat(
            [score_scenario(params, s).assign(scenario=seed) for seed, s in scenarios.items()],
            ignore_index=True,
        )
        log.info("evaluate: %s scored on %d scenario(s)", name, len(scenarios))
    table = pd.DataFrame({name: metrics(s) for name, s in scored_by_detector.items()}).T
    return table.rename_axis("detector"), scored_by_detector


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
