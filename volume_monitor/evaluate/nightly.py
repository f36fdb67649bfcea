"""Scoring days one by one as the nightly run does: each day with the counts of the days
before it, as the state store keeps them (training's, and those scored since)."""

from __future__ import annotations

import pandas as pd

from volume_monitor.detect.explain import usual_rows

RECENT_WEEKS = 12  # of stored days the nightly run reads back before the day it scores


def score_nightly(
    detector, training: pd.DataFrame, frame: pd.DataFrame, days: pd.DatetimeIndex
) -> pd.DataFrame:
    """Every day of ``days`` in ``frame`` (an ETL frame, dates as its index) scored by
    ``detector`` in order, each with the stored counts of the ``RECENT_WEEKS`` before it:
    ``training`` (its ETL frame) as training scored it, then the days scored since."""
    stored = as_stored(detector.score(training))
    stored = stored[stored["date"] >= days[0] - pd.Timedelta(weeks=RECENT_WEEKS)]
    scored_days = []
    for day in days:
        scored = as_stored(detector.score(frame[frame.index == day], recent=stored))
        scored_days.append(scored)
        first_kept = stored["date"] >= day - pd.Timedelta(weeks=RECENT_WEEKS)
        stored = pd.concat([stored[first_kept], scored], ignore_index=True)
    return pd.concat(scored_days, ignore_index=True)


def as_stored(scored: pd.DataFrame) -> pd.DataFrame:
    """Scored rows as the nightly run reads them back from the state store, ``kept`` where
    the next nights' baselines are taken from them."""
    scored = scored.reset_index(drop=True)
    return scored.assign(kept=usual_rows(scored))
