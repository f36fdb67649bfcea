"""Which anomalous series an alert may send: silences.

A silence (kept in the state store, managed with ``volume-monitor silence``) names a monitor,
optional ``dimension=value`` matchers and a last day. A series it matches is still scored and
written to ``scores.csv`` with ``silenced`` true, but no alert counts or lists it. A silence
without matchers silences the whole monitor, a missing day included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from volume_monitor.state import Silence


def silenced_rows(scored: pd.DataFrame, silences: Sequence[Silence]) -> np.ndarray:
    """For each row of ``scored``: whether an active silence in ``silences`` matches it (every
    matcher's dimension holds its value). A matcher on a dimension the rows lack matches
    nothing."""
    silenced = np.zeros(len(scored), dtype=bool)
    for silence in silences:
        matched = np.ones(len(scored), dtype=bool)
        for dimension, value in silence.matchers.items():
            if dimension not in scored.columns:
                matched[:] = False
                break
            matched &= scored[dimension].astype(str).to_numpy() == value
        silenced |= matched
    return silenced


def silences_whole_monitor(silences: Sequence[Silence]) -> bool:
    """Whether one of ``silences`` has no matchers: the whole monitor is silenced."""
    return any(not silence.matchers for silence in silences)


def sendable(scored: pd.DataFrame) -> pd.Series:
    """The rows an alert may count and list: anomalous and not silenced."""
    if "silenced" not in scored.columns:
        return scored["is_anomaly"].astype(bool)
    return scored["is_anomaly"].astype(bool) & ~scored["silenced"].astype(bool)


# Severities, lowest first: PagerDuty's names, which the other channels show as they are.
SEVERITIES = ("info", "warning", "error", "critical")
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
    return [
        (f"{first}={value}", int(row["size"]))
        for value, row in segments.iterrows()
        if row["size"] >= 2 and row["all"]
    ]


def inhibited_rows(scored: pd.DataFrame, dimensions: Sequence[str], missing_day: bool):
    """Rows whose own line a bigger finding already explains: every row on a missing day, and
    the rows of a stalled segment (see :func:`stalled_segments`)."""
    if missing_day:
        return np.ones(len(scored), dtype=bool)
    inhibited = np.zeros(len(scored), dtype=bool)
    for segment, _ in stalled_segments(scored, dimensions):
        if segment == "all series":
            return np.ones(len(scored), dtype=bool)
        dimension, _, value = segment.partition("=")
        inhibited |= scored[dimension].astype(str).to_numpy() == value
    return inhibited


def severity(scored: pd.DataFrame, dimensions: Sequence[str], missing_day: bool) -> str:
    """How bad an alerting day is: ``critical`` for a missing day or a stalled segment,
    ``error`` when at least ``WIDE_SHARE`` of the series are anomalous, else ``warning``."""
    if missing_day or stalled_segments(scored, dimensions):
        return "critical"
    if len(scored) and sendable(scored).mean() >= WIDE_SHARE:
        return "error"
    return "warning"
