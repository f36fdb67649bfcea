"""The labeled benchmark: demo histories with every kind of fault a real pipeline has, and the
odd days that are normal, injected at known days and series of a held-back window, scored day
by day by each detector (see :mod:`~volume_monitor.evaluate.scenarios`).

Metrics (:mod:`~volume_monitor.evaluate.metrics`): precision, recall and F1 at the series-day
level and at the day level, ROC-AUC of the score (lower = more anomalous) and of the size of
the deviation (how anomalies are ranked), false alerts per 30 normal days, and how each kind
of day was handled: missing days and stopped series caught, new-channel series paged (which
should be none), whole-channel moves and repeated incidents caught, correlated moves and
holidays alerting, late days typed ``late``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd

from volume_monitor import etl, freshness
from volume_monitor.alerting import policy
from volume_monitor.detect.detector import SEED_PARAMS, VolumeDetector
from volume_monitor.evaluate.metrics import metrics
from volume_monitor.evaluate.nightly import score_nightly
from volume_monitor.evaluate.plots import plot_detector
from volume_monitor.evaluate.scenarios import Scenario, inject_scenario, make_scenario

__all__ = [
    "DETECTORS", "Scenario", "inject_scenario", "make_scenario", "metrics", "plot_detector",
    "run_benchmark", "score_scenario", "self_benchmark",
]  # fmt: skip

log = logging.getLogger(__name__)

DETECTORS: dict[str, dict[str, Any]] = {
    "seed": {"features": "seed", **SEED_PARAMS},
    "iforest_baseline_groups": {},
    "iforest_groups_unclean": {"clean": False},  # trains on the incidents in its window
    "ocsvm_baseline_groups": {"method": "ocsvm"},
    "lof_baseline_groups": {"method": "lof"},
    "iforest_baseline": {"group_threshold": 0.0},
    "zscore_mad": {"method": "zscore", "group_threshold": 0.0},
}
LATE_READ_AT = dt.time(20, 0)  # a late day's latest event
LATE_TOLERANCE = dt.timedelta(minutes=60)
SELF_BENCHMARK_DAYS = 56  # the faults' schedule spans 52 days of the window
MIN_SELF_HISTORY = 28  # days before the window to fit on


def self_benchmark(history: pd.DataFrame, params: dict[str, Any], seed: int = 0) -> dict:
    """The benchmark metrics of a configuration on faults injected into the last
    ``SELF_BENCHMARK_DAYS`` of a real training history (fitted on the days before); empty when
    the history is too short."""
    if history["date"].nunique() < SELF_BENCHMARK_DAYS + MIN_SELF_HISTORY:
        log.info("evaluate: history too short for the self-benchmark; skipped")
        return {}
    scenario = inject_scenario(history, np.random.default_rng(seed), SELF_BENCHMARK_DAYS)
    return metrics(score_scenario(params, scenario).assign(scenario=seed))


def score_scenario(params: dict[str, Any], scenario: Scenario) -> pd.DataFrame:
    """Fit on the history before the window, score every window day; one row per series-day
    with ``kind`` (the injected fault or odd day, or empty) beside the detector's verdict."""
    history = scenario.counts[scenario.counts["date"] < scenario.window_start]
    train = etl.add_calendar(etl.complete(history, history, history["date"].unique()))
    holidays = {"holidays": scenario.holiday_country} if scenario.holiday_country else {}
    detector = VolumeDetector(**{**holidays, **params}).fit(train)
    window = scenario.counts[scenario.counts["date"] >= scenario.window_start]
    days = pd.date_range(scenario.window_start, scenario.last_day)
    frame = etl.add_calendar(etl.complete(window, detector.series_frame, days))
    scored = score_nightly(detector, train, frame, days)
    late = scored["date"].isin([pd.Timestamp(d) for d in _read_late(scenario, days)])
    scored = policy.as_late(scored, late.to_numpy())
    labeled = scored.merge(scenario.labels, on=["date", *etl.SERIES_KEYS], how="left")
    return labeled.assign(kind=labeled["kind"].fillna(""))


def _read_late(scenario: Scenario, days: pd.DatetimeIndex) -> list[dt.date]:
    """The window days a monitor with a freshness query finds late: each day's latest event
    is 23:59, or ``LATE_READ_AT`` on the days read before they were loaded."""
    found = []
    for day in (d.date() for d in days):
        read_at = LATE_READ_AT if day in scenario.late_days else dt.time(23, 59)
        latest = dt.datetime.combine(day, read_at)
        if freshness.Freshness(day, latest, LATE_TOLERANCE).late:
            found.append(day)
    return found


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
