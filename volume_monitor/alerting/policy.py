"""Whether a scored day alerts (gates, thresholds, the calendar, silences), how badly
(severity), and which of its series an alert names (silences, inhibition).

A silence (kept in the state store, managed with ``volume-monitor silence``) names a monitor,
optional ``dimension=value`` matchers and a last day. A series it matches is still scored and
written to ``scores.csv`` with ``silenced`` true, but no alert counts or lists it. A silence
without matchers silences the whole monitor, a missing day included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from volume_monitor.config import MonitorSpec
from volume_monitor.known_days import KnownDay
from volume_monitor.state import Silence


@dataclass(frozen=True)
class Decision:
    alert: bool
    reasons: list[str]
    anomalies: int  # anomalous series that are not silenced
    share: float
    missing_day: bool = False
    silenced: int = 0  # anomalous series that a silence keeps out of the alert
    late_data: str | None = None  # why the day was read before it was complete


def decide(
    scored: pd.DataFrame,
    monitor: MonitorSpec,
    missing_day: bool,
    known_day: KnownDay | None = None,
    monitor_silenced: bool = False,
    late_data: str | None = None,
) -> Decision:
    """Alert on a missing day, on at least the monitor's ``alert_min_anomalies`` anomalous
    series (0 turns that rule off), or, when its ``alert_share`` is set, on an anomalous share
    of the day's series at or above it — unless the calendar marks the day to be suppressed
    (the reasons are kept). Silenced series (a ``silenced`` column) do not count; with
    ``monitor_silenced`` nothing alerts, not even a missing day. A day read before it was
    complete (``late_data``, its reason) alerts with that one line."""
    allowed = sendable(scored)
    anomalies = int(allowed.sum())
    silenced = int(scored["is_anomaly"].sum()) - anomalies
    share = anomalies / len(scored) if len(scored) else 0.0
    reasons = []
    minimum, share_limit = monitor.alert_min_anomalies, monitor.alert_share
    if missing_day and not monitor_silenced:
        reasons.append("missing day: the query returned no rows")
    if late_data and not monitor_silenced:
        reasons.append(late_data)
    if minimum and anomalies >= minimum:
        reasons.append(f"{anomalies} anomalous series (threshold {minimum})")
    if share_limit is not None and share >= share_limit:
        reasons.append(f"anomalous share {share:.1%} >= {share_limit:.1%}")
    if reasons and known_day is not None and known_day.suppress_alert:
        reasons.append(f"alert suppressed: known day '{known_day.label}'")
        return Decision(False, reasons, anomalies, share, missing_day, silenced, late_data)
    return Decision(bool(reasons), reasons, anomalies, share, missing_day, silenced, late_data)


LOW_DIRECTIONS = ("low", "missing")


def gated(scored: pd.DataFrame, monitor: MonitorSpec) -> pd.DataFrame:
    """``scored`` with the anomalies the monitor's gates let through: a series alerts only when
    its count moved at least ``alert_min_change`` events and ``alert_min_change_pct`` per
    cent from its expected count, in the ``alert_direction`` asked for (``low``: lower,
    stalled or missing; ``high``: higher). The rows held back keep their expected range and
    direction but are no longer anomalous, and carry no cause. A missing day is not a
    series' move: it alerts whatever the gates."""
    change = (scored["count"] - scored["expected"]).abs()
    expected = scored["expected"].where(scored["expected"] > 0)
    percent = (100.0 * change / expected).fillna(np.inf)
    passes = (change >= monitor.alert_min_change) & (percent >= monitor.alert_min_change_pct)
    if monitor.alert_direction != "both":
        low = scored["direction"].isin(LOW_DIRECTIONS)
        passes &= low if monitor.alert_direction == "low" else scored["direction"].eq("high")
    held_back = scored["is_anomaly"].astype(bool) & ~passes.fillna(False).astype(bool)
    return not_anomalous(scored, held_back.to_numpy(), "")


def expected(scored: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``scored`` with ``rows`` (series someone said to expect that day) not anomalous, their
    cause ``expected``."""
    return not_anomalous(scored, rows, "expected")


def as_late(scored: pd.DataFrame, rows: np.ndarray | None = None) -> pd.DataFrame:
    """``scored`` with ``rows`` (default: all) read before their day was complete: they keep
    their count, range and direction, none is anomalous, and each carries the cause
    ``late``."""
    every = np.ones(len(scored), dtype=bool)
    return not_anomalous(scored, every if rows is None else rows, "late")


def not_anomalous(scored: pd.DataFrame, rows: np.ndarray, cause: str) -> pd.DataFrame:
    """``scored`` with ``rows`` no longer anomalous, whatever the detector said, and
    ``cause`` as their cause (the others unchanged)."""
    if not rows.any():
        return scored
    return scored.assign(
        is_anomaly=scored["is_anomaly"].astype(bool).to_numpy() & ~rows,
        cause=scored["cause"].where(~rows, cause),
    )


def matching_rows(frame: pd.DataFrame, matchers: dict[str, str]) -> np.ndarray:
    """The rows of ``frame`` whose labels hold every ``matchers`` pair (every row with none;
    none for a matcher on a dimension the rows lack)."""
    rows = np.ones(len(frame), dtype=bool)
    for name, value in matchers.items():
        if name not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        rows &= frame[name].astype(str).to_numpy() == value
    return rows


def silenced_rows(scored: pd.DataFrame, silences: Sequence[Silence]) -> np.ndarray:
    """For each row of ``scored``: whether an active silence in ``silences`` matches it (every
    matcher's dimension holds its value). A matcher on a dimension the rows lack matches
    nothing."""
    silenced = np.zeros(len(scored), dtype=bool)
    for silence in silences:
        silenced |= matching_rows(scored, silence.matchers)
    return silenced


def silences_whole_monitor(silences: Sequence[Silence]) -> bool:
    """Whether one of ``silences`` has no matchers: the whole monitor is silenced."""
    return any(not silence.matchers for silence in silences)


def sendable(scored: pd.DataFrame) -> pd.Series:
    """The rows an alert may count and list: anomalous and not silenced."""
    if "silenced" not in scored.columns:
        return scored["is_anomaly"].astype(bool)
    return scored["is_anomaly"].astype(bool) & ~scored["silenced"].astype(bool)


# Severities are PagerDuty's names (warning, error, critical), which other channels show as is.
WIDE_SHARE = 0.2  # anomalous share of the day's series from which a day is an ``error``
STOPPED = ("low", "missing")
STOPPED_CAUSES = ("stall", "missing_series", "missing_day")


def stalled_segments(scored: pd.DataFrame, dimensions: Sequence[str]) -> list[tuple[str, int]]:
    """The segments whose every series (two or more) stopped or stalled and may be sent: the
    values of the first dimension (``channelid=web``), or ``all series`` with one dimension;
    with the number of series of each."""
    first = dimensions[0] if len(dimensions) > 1 else None
    stopped = (
        sendable(scored)
        & scored["direction"].isin(STOPPED).to_numpy()
        & scored["cause"].isin(STOPPED_CAUSES).to_numpy()
    )
    if first is None:
        return [("all series", len(scored))] if len(scored) >= 2 and stopped.all() else []
    segments = stopped.groupby(scored[first].astype(str).to_numpy(), sort=True).agg(["size", "all"])
    stalled = segments.loc[(segments["size"] >= 2) & segments["all"], "size"]
    return [(f"{first}={value}", int(size)) for value, size in stalled.items()]


def inhibited_rows(scored: pd.DataFrame, dimensions: Sequence[str], missing_day: bool):
    """Rows whose own line a bigger finding already explains: every row on a missing day, and
    the rows of a stalled segment (see :func:`stalled_segments`)."""
    if missing_day:
        return np.ones(len(scored), dtype=bool)
    segments = [segment for segment, _ in stalled_segments(scored, dimensions)]
    if not segments:
        return np.zeros(len(scored), dtype=bool)
    if segments == ["all series"]:
        return np.ones(len(scored), dtype=bool)
    values = [segment.partition("=")[2] for segment in segments]
    return np.isin(scored[dimensions[0]].astype(str).to_numpy(), values)


def severity(scored: pd.DataFrame, dimensions: Sequence[str], missing_day: bool) -> str:
    """How bad an alerting day is: ``critical`` for a missing day or a stalled segment,
    ``error`` when at least ``WIDE_SHARE`` of the series are anomalous, else ``warning``."""
    if missing_day or stalled_segments(scored, dimensions):
        return "critical"
    if len(scored) and sendable(scored).mean() >= WIDE_SHARE:
        return "error"
    return "warning"
