"""The results stage: ``results/<monitor>/<YYYY-MM-DD>/`` and every file name in it, the
day's summary (:class:`RunSummary`) and ``scores.csv``.

A day's folder is built beside its place and swapped in whole (see
:func:`volume_monitor.files.replaced_folder`): a re-score leaves no file of an earlier verdict.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from volume_monitor.config import DEFAULT_DIMENSIONS, DEFAULT_MONITOR
from volume_monitor.files import write_atomic

log = logging.getLogger(__name__)

SCORES_FILE, SUMMARY_FILE, HISTOGRAM_FILE = "scores.csv", "summary.json", "histogram.png"
VOLUME_FILE, BOUNDARY_FILE = "volume.png", "boundary.png"
DESCRIBE_FILE, DEVIATIONS_FILE = "describe.csv", "deviations.png"  # a model's training data
ALERT_LEVELS_FILE = "alert_levels.json"  # how far from normal pages, as training set it
EMAIL_FILE, EMAIL_HTML_FILE = "email.txt", "email.html"
VERDICT_COLUMNS = ["expected_low", "expected_high", "score", "is_anomaly", "direction", "cause"]


def score_columns(dimensions: Sequence[str] = DEFAULT_DIMENSIONS) -> list[str]:
    """The columns of ``scores.csv``: ``date, <dimensions>, count``, the verdict, and whether
    a silence kept the series out of the alert."""
    return ["date", *dimensions, "count", *VERDICT_COLUMNS, "silenced"]


SCORE_COLUMNS = score_columns()  # the default monitor's


@dataclass
class RunSummary:
    """What ``summary.json`` says of a scored day."""

    date: str
    monitor: str
    rows: int
    anomalies: int
    anomaly_share: float
    alert: bool
    reasons: list[str]
    model_uri: str
    model_version: str
    run_id: str
    notified: bool = False
    notified_at: str | None = None
    missing_day: bool = False
    groups: list[str] = field(default_factory=list)
    known_day: str | None = None
    scored_at: str = ""
    delivery_error: str | None = None
    late: bool = False  # the alert reached its channel after a failed night
    late_data: str | None = None  # the day was read before it was complete: why
    refused_recipients: list[str] = field(default_factory=list)
    silenced: int = 0
    severity: str | None = None  # of an alerting day: warning, error or critical
    channels: dict[str, str] = field(default_factory=dict)  # channel -> its delivery's status
    duration_seconds: float | None = None  # reading and scoring the day, before any delivery

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """A summary read back; keys it does not know are ignored, missing ones defaulted."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {key: value for key, value in data.items() if key in names}
        known.setdefault("monitor", DEFAULT_MONITOR)
        for key in ("run_id", "model_uri", "model_version", "date"):
            known.setdefault(key, "")
        for key in ("rows", "anomalies", "anomaly_share"):
            known.setdefault(key, 0)
        known.setdefault("alert", False)
        known.setdefault("reasons", [])
        return cls(**known)


def monitor_dir(results_dir: Path, monitor: str) -> Path:
    return results_dir / monitor


def day_dir(results_dir: Path, day: dt.date, monitor: str = DEFAULT_MONITOR) -> Path:
    return monitor_dir(results_dir, monitor) / day.isoformat()


def models_dir(results_dir: Path, monitor: str) -> Path:
    return monitor_dir(results_dir, monitor) / "models"


def model_dir(results_dir: Path, monitor: str, version: str) -> Path:
    """``results/<monitor>/models/v<version>/``: what training found in its data (the
    summary per dimension, the deviations, the decision boundary)."""
    return models_dir(results_dir, monitor) / f"v{version}"


def describe(frame: pd.DataFrame, dimensions: Sequence[str]) -> pd.DataFrame:
    """The training data's summary: ``describe()`` of the daily counts of all series
    (dimension ``(all)``) and of each value of each dimension."""
    parts = [frame["count"].describe().to_frame().T.assign(dimension="(all)", value="")]
    for dimension in dimensions:
        by_value = frame.groupby(frame[dimension].astype(str), observed=True)["count"].describe()
        parts.append(by_value.assign(dimension=dimension, value=by_value.index))
    table = pd.concat(parts, ignore_index=True)
    return table[
        ["dimension", "value", *[c for c in table.columns if c not in ("dimension", "value")]]
    ]


def worst_first(scored: pd.DataFrame) -> pd.DataFrame:
    """Anomalies first, the largest deviation from the baseline leading; then the rest by
    score, lowest first."""
    size = scored["deviation"].abs().fillna(0.0)
    order = scored.assign(_size=np.where(scored["is_anomaly"], -size, 0.0))
    ranked = order.sort_values(["is_anomaly", "_size", "score"], ascending=[False, True, True])
    return ranked.drop(columns="_size")


def write_scores(
    folder: Path, scored: pd.DataFrame, dimensions: Sequence[str] = DEFAULT_DIMENSIONS
) -> Path:
    """``scores.csv``: the contract columns, worst first (see :func:`worst_first`); a label
    that a spreadsheet would read as a formula starts with ``'`` (see :func:`as_cell`)."""
    table = scored.assign(
        date=pd.to_datetime(scored["date"]).dt.strftime("%Y-%m-%d"),
        expected_low=scored["expected_low"].astype("Int64"),
        expected_high=scored["expected_high"].astype("Int64"),
        silenced=scored["silenced"] if "silenced" in scored.columns else False,
    )
    table = worst_first(table)[score_columns(dimensions)]
    table = table.assign(**{d: as_cell(table[d]) for d in dimensions})
    return write_atomic(
        folder / SCORES_FILE, lambda p: table.to_csv(p, index=False, float_format="%.6g")
    )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_cell(labels: pd.Series) -> pd.Series:
    """Labels as a spreadsheet shows them and never runs them: one starting like a formula
    (``=``, ``+``, ``-``, ``@``, tab, CR) gets a leading ``'``."""
    text = labels.astype(str)
    risky = text.str.startswith(FORMULA_STARTS)
    return text.where(~risky, "'" + text)


def write_summary(folder: Path, summary: RunSummary | dict[str, Any]) -> Path:
    data = summary.as_dict() if isinstance(summary, RunSummary) else summary
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    return write_atomic(folder / SUMMARY_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def read_summary(folder: Path) -> dict[str, Any] | None:
    """The summary of an earlier run of the same day, or None (also when it is unreadable)."""
    try:
        return json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_run_summary(folder: Path) -> RunSummary | None:
    """:func:`read_summary` as a :class:`RunSummary`."""
    data = read_summary(folder)
    return RunSummary.from_dict(data) if isinstance(data, dict) else None


@dataclass(frozen=True)
class AlertLevels:
    """What training set a model's alert levels to, as its page shows them: the budget, each
    level's name and alert level in spreads, what they did on the days held back, and what
    the model says of itself in words."""

    budget: float
    levels: dict[str, float]
    days: int
    days_over: int
    notes: list[str]


def write_alert_levels(path: Path, detector) -> None:
    """``detector``'s alert levels as :class:`AlertLevels` JSON at ``path``."""
    calibration = detector.calibration
    levels = AlertLevels(
        budget=float(detector.alert_budget),
        levels=dict(zip(detector.level_names, calibration.alert_levels, strict=True)),
        days=calibration.days,
        days_over=calibration.days_over,
        notes=detector.notes(),
    )
    text = json.dumps(dataclasses.asdict(levels), indent=2, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")


def read_alert_levels(path: Path) -> AlertLevels | None:
    """The :class:`AlertLevels` kept at ``path``; None when there are none (a model trained
    before alert levels were calibrated) or the file is not one."""
    try:
        return AlertLevels(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
