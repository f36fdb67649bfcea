"""What people said about the days a monitor scored (``volume-monitor feedback``), and what
training and scoring make of it.

- ``normal``: a false alarm. The series-days stay in training, even where they look unusual,
  and the alert counts against the monitor's live precision.
- ``expected``: a known event. The day is scored but those series do not alert, and they are
  left out of training.
- ``incident``: a real fault. Left out of training.
- ``new-level``: the series' level changed for good. Training learns them only from that day
  on.

Besides, every series-day that alerted and that nobody called ``normal`` is left out of the
next training (turn this off with the model parameter ``clean=false``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from volume_monitor.alerting.policy import matching_rows
from volume_monitor.alerting.silences import check_dimensions, current_user, matched
from volume_monitor.errors import ConfigError
from volume_monitor.state import Feedback, Store

EFFECTS = {
    "normal": "the day stays in training and counts as a false alarm",
    "expected": "scored, not alerted, and left out of training",
    "incident": "left out of the next training",
    "new-level": "the next training learns these series from this day on",
}
CONFIRMING = ("expected", "incident", "new-level")  # the alert saw a real change


@dataclass
class TrainingFeedback:
    """What the verdicts and past alerts do to a training frame: the rows to train on, the
    rows a person called normal, the verdicts used, and the rows left out by reason."""

    keep: np.ndarray
    normal: np.ndarray
    used: list[Feedback] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)


def for_training(
    frame: pd.DataFrame,
    dimensions: Sequence[str],
    verdicts: Sequence[Feedback],
    alerted: pd.DataFrame,
    clean: bool = True,
) -> TrainingFeedback:
    """Which rows of ``frame`` (an ETL frame: the dates as its index, the ``dimensions``) to
    train on, given the monitor's ``verdicts`` and its ``alerted`` series-days (``date`` and
    the dimensions); with ``clean`` false, past alerts are trained on unless a verdict says
    otherwise. Labels are compared only on the rows of the days concerned: a year of many
    series is millions of rows."""
    dates = pd.DatetimeIndex(frame.index).to_numpy()
    normal = np.zeros(len(frame), dtype=bool)
    result = TrainingFeedback(np.ones(len(frame), dtype=bool), normal)
    for item in verdicts:
        day = np.datetime64(item.date, "ns")
        days = dates < day if item.verdict == "new-level" else dates == day
        rows = _matching_among(frame, days, item.matchers)
        if item.verdict == "normal":
            normal |= rows
        else:
            _leave_out(result, rows, item.verdict)
        if rows.any():
            result.used.append(item)
    if clean and len(alerted):
        _leave_out(result, _rows_of(frame, dates, dimensions, alerted) & ~normal, "alerted")
    return result


def add(
    store: Store,
    monitor: str,
    day: dt.date,
    verdict: str,
    matchers: dict[str, str],
    note: str | None,
    today: dt.date,
    author: str | None = None,
) -> Feedback:
    """Keep a verdict on ``monitor``'s ``day`` for the series matching ``matchers`` (empty:
    all), given by ``author`` (by default whoever runs the command); a :class:`ConfigError`
    for a dimension the monitor does not have, or a verdict other than ``expected`` on a day
    still to come."""
    check_dimensions(monitor, matchers, store.dimensions(monitor) or None)
    if verdict != "expected" and day > today:
        raise ConfigError(f"--date {day} is still to come: only 'expected' can be said ahead")
    item = Feedback(monitor, day, verdict, dict(matchers), (note or "").strip() or None,
                    author or current_user())  # fmt: skip
    return dataclasses.replace(item, id=store.add_feedback(item))


def render(verdicts: Sequence[Feedback]) -> str:
    """One line per verdict: id, monitor, day, verdict, what it matches, who, note."""
    if not verdicts:
        return "no feedback\n"
    lines = [
        f"#{item.id}  {item.monitor}  {item.date}  {item.verdict}  {matched(item.matchers)}  "
        f"{item.author or '-'}  {item.note or ''}".rstrip()
        for item in verdicts
    ]
    return "\n".join(lines) + "\n"


def expected_rows(scored: pd.DataFrame, verdicts: Sequence[Feedback], day: dt.date):
    """The rows of ``scored`` (one day) an ``expected`` verdict on ``day`` covers."""
    covered = np.zeros(len(scored), dtype=bool)
    for item in verdicts:
        if item.verdict == "expected" and item.date == day:
            covered |= matching_rows(scored, item.matchers)
    return covered


def whole_day_expected(verdicts: Sequence[Feedback], day: dt.date) -> Feedback | None:
    """An ``expected`` verdict on all of ``day`` (no matchers), if one was given."""
    return next(
        (v for v in verdicts if v.verdict == "expected" and v.date == day and not v.matchers),
        None,
    )


@dataclass(frozen=True)
class Precision:
    """Of the alerted days someone gave a verdict on: how many, and how many the verdicts
    confirm (an ``expected`` event, an ``incident`` or a ``new-level``, not ``normal``)."""

    judged: int
    confirmed: int

    @property
    def value(self) -> float | None:
        return self.confirmed / self.judged if self.judged else None


def live_precision(verdicts: Sequence[Feedback], alerted_days: set[dt.date]) -> Precision:
    """Alerts confirmed / alerts judged, per alerted day: a day is confirmed when any verdict
    on it confirms a real change, a false alarm when every verdict on it says ``normal``."""
    judged: dict[dt.date, bool] = {}
    for item in verdicts:
        if item.date in alerted_days:
            judged[item.date] = judged.get(item.date, False) or item.verdict in CONFIRMING
    return Precision(len(judged), sum(judged.values()))


def _leave_out(result: TrainingFeedback, rows: np.ndarray, reason: str) -> None:
    newly = rows & result.keep
    if newly.any():
        result.left_out[reason] = result.left_out.get(reason, 0) + int(newly.sum())
    result.keep &= ~rows


def _matching_among(frame: pd.DataFrame, days: np.ndarray, matchers: dict[str, str]):
    """The rows among ``days`` (a mask of ``frame``'s rows) whose labels hold ``matchers``."""
    rows = np.zeros(len(frame), dtype=bool)
    positions = np.flatnonzero(days)
    rows[positions[matching_rows(frame.iloc[positions], matchers)]] = True
    return rows


def _rows_of(
    frame: pd.DataFrame, dates: np.ndarray, dimensions: Sequence[str], rows: pd.DataFrame
) -> np.ndarray:
    """Which rows of ``frame`` (its ``dates``) are among ``rows`` (by date and labels)."""
    wanted = pd.to_datetime(rows["date"]).to_numpy().astype("datetime64[ns]")
    positions = np.flatnonzero(np.isin(dates, wanted))

    def index(day: np.ndarray, labels: pd.DataFrame) -> pd.MultiIndex:
        parts = [day, *(labels[name].astype(str).to_numpy() for name in dimensions)]
        return pd.MultiIndex.from_arrays(parts)

    found = np.zeros(len(frame), dtype=bool)
    candidates = index(dates[positions], frame.iloc[positions])
    found[positions[candidates.isin(index(wanted, rows))]] = True
    return found
