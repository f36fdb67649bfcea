"""What each page of the web service shows, read from the state store and ``results/`` (never
from a monitored database), as dataclasses the templates render.

A day's *state* is what a person first wants to know of it: ``alert``, ``missing day``
(alerted), ``late`` (read before it was complete), ``ok``, or ``unscored``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from volume_monitor import results
from volume_monitor.config import MonitorSpec, Settings
from volume_monitor.state import DayRecord, Delivery, Feedback, Store

CALENDAR_DAYS = 91  # thirteen weeks of days on a monitor's page
ALERT_WINDOW_DAYS = 30  # "alerts in the last 30 days" on the overview
WORST_SERIES = 10  # series with the most alert days listed on a monitor's page
SERIES_HISTORY_DAYS = 365  # a series' chart: up to a year
PLOT_SUFFIX = ".png"


@dataclass(frozen=True)
class MonitorStatus:
    """One line of the overview: a monitor, its last scored day and what it found."""

    name: str
    owner: str
    last_day: dt.date | None
    scored_at: str | None
    state: str
    severity: str | None
    alerts_in_window: int


@dataclass(frozen=True)
class CalendarDay:
    date: dt.date
    state: str
    verdicts: tuple[str, ...] = ()  # the feedback given on the day


@dataclass(frozen=True)
class SeriesAlerts:
    labels: dict[str, str]
    alert_days: int


@dataclass(frozen=True)
class MonitorView:
    status: MonitorStatus
    dimensions: list[str]
    calendar: list[CalendarDay]
    worst: list[SeriesAlerts]


@dataclass(frozen=True)
class DayView:
    """A scored day, as its alert tells it: the verdict, the series (anomalies first), the
    plots in its results folder, the deliveries of the outbox and the feedback given."""

    monitor: str
    date: dt.date
    dimensions: list[str]
    record: DayRecord | None
    state: str
    rows: list[dict[str, object]]
    plots: list[str]
    deliveries: list[Delivery]
    feedback: list[Feedback]
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SeriesView:
    """A series' history: one point per stored day, with its expected range where scored."""

    monitor: str
    dimensions: list[str]
    labels: dict[str, str]
    dates: list[str]
    counts: list[int]
    low: list[float | None]
    high: list[float | None]
    anomalous: list[bool]

    @property
    def found(self) -> bool:
        return bool(self.dates)

    @property
    def flagged_days(self) -> list[str]:
        """The days it was flagged, the latest first (at most ten)."""
        return [d for d, a in zip(self.dates, self.anomalous, strict=True) if a][::-1][:10]


def day_state(record: DayRecord | None) -> str:
    if record is None:
        return "unscored"
    if record.missing_day:
        return "missing day"
    if record.summary.get("late_data"):
        return "late"
    return "alert" if record.alert else "ok"


def overview(settings: Settings, store: Store, today: dt.date) -> list[MonitorStatus]:
    """Every configured monitor with its last scored day."""
    return [status_of(monitor, store, today) for monitor in settings.monitors]


def status_of(monitor: MonitorSpec, store: Store, today: dt.date) -> MonitorStatus:
    start = today - dt.timedelta(days=ALERT_WINDOW_DAYS)
    recent = store.days(monitor.name, start, today)
    last = recent[-1] if recent else store.last_day(monitor.name, today)
    return MonitorStatus(
        name=monitor.name,
        owner=monitor.owner,
        last_day=last.date if last else None,
        scored_at=last.scored_at if last else None,
        state=day_state(last) if last else "never scored",
        severity=last.summary.get("severity") if last and last.alert else None,
        alerts_in_window=sum(record.alert for record in recent),
    )


def monitor_view(monitor: MonitorSpec, store: Store, today: dt.date) -> MonitorView:
    """A monitor's page: its status, thirteen weeks of days ending on its last scored day,
    and the series that alerted on most of them."""
    status = status_of(monitor, store, today)
    end = status.last_day or today - dt.timedelta(days=1)
    start = end - dt.timedelta(days=CALENDAR_DAYS - 1)
    records = {record.date: record for record in store.days(monitor.name, start, end)}
    verdicts: dict[dt.date, list[str]] = {}
    for item in store.feedback(monitor.name, start, end):
        verdicts.setdefault(item.date, []).append(item.verdict)
    calendar = [
        CalendarDay(day, day_state(records.get(day)), tuple(verdicts.get(day, ())))
        for day in (start + dt.timedelta(days=n) for n in range(CALENDAR_DAYS))
    ]
    dimensions = dimensions_of(monitor, store)
    worst = _worst(store, monitor.name, dimensions, start, end)
    return MonitorView(status, dimensions, calendar, worst)


def dimensions_of(monitor: MonitorSpec, store: Store) -> list[str]:
    """The monitor's dimensions as its stored series have them (before any: as configured)."""
    return store.dimensions(monitor.name) or list(monitor.dimensions)


def _worst(
    store: Store, monitor: str, keys: list[str], start: dt.date, end: dt.date
) -> list[SeriesAlerts]:
    alerted = store.anomalies(monitor, start, end)
    if alerted.empty or not keys:
        return []
    days = alerted.groupby(keys, dropna=False)["date"].nunique().sort_values(ascending=False)
    top = days.head(WORST_SERIES)
    index = top.index if len(keys) > 1 else [(value,) for value in top.index]
    return [
        SeriesAlerts(dict(zip(keys, map(str, values), strict=True)), int(n))
        for values, n in zip(index, top.to_numpy(), strict=True)
    ]


def day_view(settings: Settings, monitor: MonitorSpec, store: Store, day: dt.date) -> DayView:
    """A day's page: its record, its scored series (anomalies first, the furthest out
    leading), plots, deliveries and feedback."""
    record = store.day(monitor.name, day)
    scored = store.history(monitor.name, day, day)
    return DayView(
        monitor=monitor.name,
        date=day,
        dimensions=dimensions_of(monitor, store),
        record=record,
        state=day_state(record),
        rows=_rows_worst_first(scored),
        plots=day_plots(settings, monitor.name, day),
        deliveries=store.deliveries(monitor.name, day),
        feedback=store.feedback(monitor.name, day, day),
        reasons=list(record.summary.get("reasons", [])) if record else [],
    )


def _rows_worst_first(scored: pd.DataFrame) -> list[dict[str, object]]:
    if scored.empty:
        return []
    scored = scored.assign(is_anomaly=scored["is_anomaly"].fillna(False).astype(bool))
    outside = (scored["count"] - scored["expected_high"]).clip(lower=0) + (
        scored["expected_low"] - scored["count"]
    ).clip(lower=0)
    relative = outside / scored["expected_high"].clip(lower=1).fillna(1)
    ranked = scored.assign(_far=relative.fillna(0.0)).sort_values(
        ["is_anomaly", "_far", "score"], ascending=[False, False, True]
    )
    return ranked.drop(columns="_far").to_dict("records")


def day_plots(settings: Settings, monitor: str, day: dt.date) -> list[str]:
    """The file names of the plots in the day's results folder."""
    folder = results.day_dir(settings.results_dir, day, monitor)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix == PLOT_SUFFIX and p.is_file())


def plot_path(settings: Settings, monitor: str, day: dt.date, name: str) -> Path | None:
    """The plot ``name`` of the day's results folder; None unless it is one of
    :func:`day_plots` (no other file, and no path outside the folder, is ever served)."""
    if name not in day_plots(settings, monitor, day):
        return None
    return results.day_dir(settings.results_dir, day, monitor) / name


def series_view(
    monitor: MonitorSpec, store: Store, labels: Mapping[str, str], today: dt.date
) -> SeriesView:
    """The history of the series whose labels are ``labels`` (every dimension named)."""
    dimensions = dimensions_of(monitor, store)
    start = today - dt.timedelta(days=SERIES_HISTORY_DAYS)
    named = bool(dimensions) and set(labels) == set(dimensions)
    rows = store.history(monitor.name, start, today, labels) if named else None
    if rows is None or rows.empty:
        return SeriesView(monitor.name, dimensions, dict(labels), [], [], [], [], [])
    rows = rows.sort_values("date")
    return SeriesView(
        monitor=monitor.name,
        dimensions=dimensions,
        labels=dict(labels),
        dates=[f"{d:%Y-%m-%d}" for d in pd.to_datetime(rows["date"])],
        counts=[int(c) for c in rows["count"]],
        low=_optional(rows["expected_low"]),
        high=_optional(rows["expected_high"]),
        anomalous=[bool(a) for a in rows["is_anomaly"].fillna(False)],
    )


def _optional(values: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in values]


@dataclass(frozen=True)
class ModelView:
    """What training found in its data, for the model version that scored the last day (else
    the latest trained): ``describe()`` per dimension and for the counts, and its plots."""

    monitor: str
    version: str | None
    columns: list[str]
    summary: list[dict[str, object]]
    plots: list[str]
    last_day: dt.date | None = None  # whose folder holds the boundary with the day's rows
    alert_levels: results.AlertLevels | None = None  # how far from normal pages


def model_view(settings: Settings, monitor: MonitorSpec, store: Store, today: dt.date) -> ModelView:
    last = store.last_day(monitor.name, today)
    folder = model_folder(settings, monitor.name, last)
    if folder is None:
        return ModelView(monitor.name, None, [], [], [])
    described = folder / results.DESCRIBE_FILE
    table = pd.read_csv(described, keep_default_na=False) if described.is_file() else None
    with_day = last is not None and results.BOUNDARY_FILE in day_plots(
        settings, monitor.name, last.date
    )
    return ModelView(
        monitor=monitor.name,
        version=folder.name.removeprefix("v"),
        columns=[] if table is None else list(table.columns),
        summary=[] if table is None else table.round(2).to_dict("records"),
        plots=model_plots(folder),
        last_day=last.date if with_day else None,
        alert_levels=results.read_alert_levels(folder / results.ALERT_LEVELS_FILE),
    )


def model_folder(settings: Settings, monitor: str, last: DayRecord | None) -> Path | None:
    """The model files' folder of the version that scored ``last`` (the monitor's last scored
    day), or of the latest version trained; None before any training wrote one."""
    if last is not None and last.model_version:
        folder = results.model_dir(settings.results_dir, monitor, last.model_version)
        if folder.is_dir():
            return folder
    parent = results.models_dir(settings.results_dir, monitor)
    versions = [p for p in parent.glob("v*") if p.is_dir() and p.name[1:].isdigit()]
    return max(versions, key=lambda p: int(p.name[1:])) if versions else None


def model_plots(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == PLOT_SUFFIX)


def model_plot(settings: Settings, monitor: str, store: Store, today: dt.date, name: str):
    """The plot ``name`` of the model page; None unless it is one of its plots."""
    folder = model_folder(settings, monitor, store.last_day(monitor, today))
    if folder is None or name not in model_plots(folder):
        return None
    return folder / name
