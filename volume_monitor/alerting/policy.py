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
