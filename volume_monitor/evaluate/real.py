"""The real development set: public daily counts no one here wrote (``bench/data/``), scored
in rolling windows with faults injected on known days of the scored part only.

Each window trains on ``TRAINING_DAYS`` days and scores the next ``SCORED_DAYS``; windows
follow each other without overlap. Every window gets the same plan of faults
(:data:`FAULTS`): a duplicated load on one series and on every series, a partial duplicate,
a stall, a three-day stop, a day without rows, a five-day leak and a spike, each on a series
chosen in turn, so every series takes every kind. The rest are clean days: an alert on one is
a false alert.

The years are split in two halves: the first for choosing settings (``tune``), the second
only for reporting (``report``). A detector is compared with the line to beat, a robust
weekday median/MAD rule (:func:`median_mad`), on the same days.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from volume_monitor import etl
from volume_monitor.errors import ConfigError
from volume_monitor.evaluate.nightly import score_nightly

log = logging.getLogger(__name__)

DATA_DIR = Path("bench/data")
TRAINING_DAYS = 365
SCORED_DAYS = 60
HOLIDAY_COUNTRY = "US"
MAD_TO_SD = 1.4826
MAD_K = 4.0  # the line to beat: |count - weekday median| > 4 robust spreads
MAD_WEEKS = 8  # of the same weekday behind each median


@dataclass(frozen=True)
class FaultPlan:
    """One fault of every window: its ``kind``, the scored day it starts on (``offset``), the
    factor its counts are multiplied by (0: no rows), for how many days, and whether it hits
    every series (else one, chosen in turn)."""

    kind: str
    offset: int
    factor: float
    days: int = 1
    every_series: bool = False


FAULTS = (
    FaultPlan("duplicate", 3, 2.0),
    FaultPlan("duplicate_all", 10, 2.0, every_series=True),
    FaultPlan("partial_duplicate", 17, 1.4),
    FaultPlan("stall", 24, 0.05),
    FaultPlan("stop", 30, 0.0, days=3),
    FaultPlan("missing_day", 38, 0.0, every_series=True),
    FaultPlan("leak", 44, 0.65, days=5),
    FaultPlan("spike", 54, 1.8),
)
# The kinds a monitor must catch on every series-day (the others are reported, not targets).
MUST_CATCH = ("duplicate", "duplicate_all", "stall", "stop", "missing_day", "spike")
CLEAN, EVENT = "", "event"


@dataclass(frozen=True)
class RealSet:
    """One data set: counts per ``date`` and series (its one ``dimension``), the first day
    of the reported half, and the real outages the data's own description names (neither
    clean days nor injected faults)."""

    name: str
    counts: pd.DataFrame
    dimension: str
    report_from: pd.Timestamp
    events: tuple[pd.Timestamp, ...] = ()


def births(folder: Path = DATA_DIR) -> RealSet:
    """US births per day by sex, 1969-1988; the days that do not exist (31 September, day
    99) are dropped, as a ``GROUP BY`` on a date could not return them."""
    raw = pd.read_csv(_file(folder, "us_births_1969_1988.csv"), na_values=["null"])
    raw = raw.dropna(subset=["day"])
    dates = pd.to_datetime(
        {"year": raw["year"], "month": raw["month"], "day": raw["day"].astype(int)},
        errors="coerce",
    )
    if dates.isna().any():
        log.warning(
            "evaluate: births: %d rows name a date that does not exist (%d births); left out",
            int(dates.isna().sum()), int(raw.loc[dates.isna(), "births"].sum()),
        )  # fmt: skip
    counts = pd.DataFrame({"date": dates, "gender": raw["gender"], "count": raw["births"]})
    counts = counts.dropna(subset=["date"]).astype({"count": "int64"})
    return RealSet("births", _sorted(counts, "gender"), "gender", pd.Timestamp("1979-01-01"))


def bikes(folder: Path = DATA_DIR) -> RealSet:
    """Capital Bikeshare rentals per day, casual and registered riders, 2011-2012; the two
    days Hurricane Sandy closed the system are real outages."""
    raw = pd.read_csv(_file(folder, "dc_bike_sharing_2011_2012.csv"), parse_dates=["dateday"])
    counts = raw.melt(
        id_vars="dateday", value_vars=["casual", "registered"], var_name="rider", value_name="count"
    ).rename(columns={"dateday": "date"})
    sandy = (pd.Timestamp("2012-10-29"), pd.Timestamp("2012-10-30"))
    return RealSet("bikes", _sorted(counts, "rider"), "rider", pd.Timestamp("2012-07-01"), sandy)


def real_sets(folder: Path = DATA_DIR) -> list[RealSet]:
    return [births(folder), bikes(folder)]


def _file(folder: Path, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise ConfigError(f"the real development set has no {name} in {folder}")
    return path


def _sorted(counts: pd.DataFrame, dimension: str) -> pd.DataFrame:
    return counts.sort_values(["date", dimension]).reset_index(drop=True)


@dataclass(frozen=True)
class Window:
    """One rolling window of a set: ``number`` in the set, its training counts, its scored
    counts with the faults injected (rows with 0 left out, as a query returns them), its
    scored days, and one label per scored series-day (``kind``: a fault, ``event``, or empty
    for clean)."""

    set_name: str
    number: int
    half: str
    training: pd.DataFrame
    scored: pd.DataFrame
    days: pd.DatetimeIndex
    labels: pd.DataFrame


def windows(real: RealSet, training_days: int = TRAINING_DAYS) -> list[Window]:
    """The set's windows: ``training_days`` then ``SCORED_DAYS`` scored, one after another
    from its first day."""
    dates = pd.DatetimeIndex(sorted(real.counts["date"].unique()))
    found, start = [], dates[0] + pd.Timedelta(days=training_days)
    while start + pd.Timedelta(days=SCORED_DAYS - 1) <= dates[-1]:
        found.append(_window(real, len(found), start, training_days))
        start += pd.Timedelta(days=SCORED_DAYS)
    return found


def _window(real: RealSet, number: int, start: pd.Timestamp, training_days: int) -> Window:
    days = pd.date_range(start, periods=SCORED_DAYS)
    counts, key = real.counts, real.dimension
    in_training = (counts["date"] >= start - pd.Timedelta(days=training_days)) & (
        counts["date"] < start
    )
    scored = counts[counts["date"].isin(days)].reset_index(drop=True)
    series = sorted(counts[key].unique())
    labels = pd.DataFrame(
        [(day, value, CLEAN) for day in days for value in series], columns=["date", key, "kind"]
    )
    labels.loc[labels["date"].isin(real.events), "kind"] = EVENT
    factor = np.ones(len(scored))
    for position, plan in enumerate(FAULTS):
        hit_days = _fault_days(plan, days, real.events)
        hit = [] if plan.every_series else [series[(number + position) % len(series)]]
        rows = scored["date"].isin(hit_days) & (scored[key].isin(hit) | plan.every_series)
        factor[rows.to_numpy()] *= plan.factor
        marked = labels["date"].isin(hit_days) & (labels[key].isin(hit) | plan.every_series)
        labels.loc[marked, "kind"] = plan.kind
    scored = scored.assign(count=np.round(scored["count"] * factor).astype("int64"))
    half = "report" if start >= real.report_from else "tune"
    return Window(
        real.name, number, half, counts[in_training].reset_index(drop=True),
        scored[scored["count"] > 0].reset_index(drop=True), days, labels,
    )  # fmt: skip


def _fault_days(plan: FaultPlan, days: pd.DatetimeIndex, events) -> pd.DatetimeIndex:
    """The days of ``plan`` in a window of ``days``: from its offset, moved later past any
    real event (a fault on an outage day would measure neither)."""
    offset = plan.offset
    while days[offset : offset + plan.days].isin(events).any():
        offset += 1
    return days[offset : offset + plan.days]


# A detector of the evaluation: training counts, scored counts and their days, the dimension
# -> one row per scored series-day with ``is_anomaly``.
Detect = Callable[[pd.DataFrame, pd.DataFrame, pd.DatetimeIndex, str], pd.DataFrame]


def volume_detector(**params) -> Detect:
    """The project's detector with ``params`` (US holidays declared), fitted on each
    window's training days as ``train.py`` does and scoring its days one by one as the
    nightly ``deploy.py`` does: with the counts of the days before, as the state store keeps
    them, training's and those scored since."""
    from volume_monitor.detect.detector import VolumeDetector

    def detect(training, scored, days, dimension):
        keys = [dimension]
        train = etl.add_calendar(
            etl.complete(training, training, training["date"].unique(), keys), keys
        )
        detector = VolumeDetector(**{"holidays": HOLIDAY_COUNTRY, **params}).fit(train)
        frame = etl.add_calendar(etl.complete(scored, detector.series_frame, days, keys), keys)
        return score_nightly(detector, train, frame, days)

    return detect


def median_mad(k: float = MAD_K, weeks: int = MAD_WEEKS) -> Detect:
    """The line to beat: per series and weekday, the median of the last ``weeks`` counts of
    that weekday before the scored days and their median absolute deviation; a count more
    than ``k`` robust spreads (MAD × 1.4826, at least one event) from the median is
    anomalous. ``dimension``: the series' key column, or a list of them."""

    def detect(training, scored, days, dimension):
        keys = [dimension] if isinstance(dimension, str) else list(dimension)
        recent = training.assign(weekday=training["date"].dt.day_of_week)
        recent = recent.sort_values("date").groupby([*keys, "weekday"]).tail(weeks)
        by_day = recent.groupby([*keys, "weekday"])["count"]
        center = by_day.median().rename("center")
        mad = by_day.apply(lambda c: float(np.median(np.abs(c - c.median())))).rename("mad")
        frame = etl.complete(scored, training[keys], days, keys).astype(dict.fromkeys(keys, str))
        frame = frame.assign(weekday=frame["date"].dt.day_of_week).merge(
            pd.concat([center, mad], axis=1).reset_index().astype(dict.fromkeys(keys, str)),
            on=[*keys, "weekday"],
            how="left",
        )
        spread = np.maximum(MAD_TO_SD * frame["mad"], 1.0)
        return frame.assign(is_anomaly=(frame["count"] - frame["center"]).abs() > k * spread)

    return detect


def score_windows(found: list[Window], detect: Detect, dimension: str) -> pd.DataFrame:
    """Every window scored by ``detect``: one row per scored series-day with its label."""
    parts = []
    for window in found:
        scored = detect(window.training, window.scored, window.days, dimension)
        scored = scored[["date", dimension, "count", "is_anomaly"]].astype({dimension: str})
        labeled = window.labels.astype({dimension: str}).merge(
            scored, on=["date", dimension], how="left"
        )
        parts.append(labeled.assign(set=window.set_name, window=window.number, half=window.half))
    return pd.concat(parts, ignore_index=True)


def table(scored: pd.DataFrame) -> pd.DataFrame:
    """Per set and half: clean days alerting per ``SCORED_DAYS`` scored, and per fault kind
    the series-day recall and the share of its days alerting."""
    rows = {}
    for (name, half), part in scored.groupby(["set", "half"], sort=False):
        rows[(name, half)] = summarise(part)
    return pd.DataFrame(rows).T.rename_axis(["set", "half"])


def summarise(scored: pd.DataFrame) -> dict[str, float]:
    """The metrics of one detector's scored windows (:func:`table`'s row)."""
    flagged = scored["is_anomaly"].fillna(False).astype(bool)
    days = scored.assign(flagged=flagged).groupby(["window", "date"])
    alerted = days["flagged"].any()
    kinds = days["kind"].agg(lambda k: next((v for v in k if v != CLEAN), CLEAN))
    clean = kinds == CLEAN
    row = {
        "clean_days": float(clean.sum()),
        "clean_alerts_per_60": SCORED_DAYS * float(alerted[clean].sum()) / max(clean.sum(), 1),
    }
    for plan in FAULTS:
        of_kind = scored["kind"] == plan.kind
        row[f"recall_{plan.kind}"] = float(flagged[of_kind].mean()) if of_kind.any() else np.nan
        on_days = kinds == plan.kind
        row[f"days_{plan.kind}"] = float(alerted[on_days].mean()) if on_days.any() else np.nan
    must = scored["kind"].isin(MUST_CATCH)
    row["recall_must"] = float(flagged[must].mean()) if must.any() else np.nan
    events = kinds == EVENT
    row["event_days_alerting"] = float(alerted[events].sum()) if events.any() else np.nan
    return row


def run_real(folder: Path = DATA_DIR, detectors: dict[str, Detect] | None = None) -> pd.DataFrame:
    """Every detector (default: the project's and the median/MAD rule) on every window of
    every set: one row per set, half and detector, with :func:`summarise`'s metrics."""
    detectors = detectors or {"volume_monitor": volume_detector(), "median_mad": median_mad()}
    parts = []
    for real in real_sets(folder):
        found = windows(real)
        for name, detect in detectors.items():
            scored = score_windows(found, detect, real.dimension)
            parts.append(table(scored).assign(detector=name).set_index("detector", append=True))
            log.info("evaluate: %s scored on %d windows of %s", name, len(found), real.name)
    return pd.concat(parts)


def flattened(found: pd.DataFrame) -> pd.DataFrame:
    """:func:`run_real`'s table as one row per detector, its metrics named
    ``<set>_<half>_<metric>`` (as MLflow logs them)."""
    wide = found.rename_axis(columns="name").stack().rename("value").reset_index()
    wide["metric"] = wide["set"] + "_" + wide["half"] + "_" + wide["name"]
    return wide.pivot(index="detector", columns="metric", values="value")
