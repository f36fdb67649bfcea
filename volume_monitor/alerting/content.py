"""The alert's content: one channel-neutral :class:`Alert` per monitor and day (or a
"resolved" notice), built from the scored day and the policy's decision. Each channel renders
it its own way; the outbox keeps it as JSON until every channel has it.

What a person needs to act: the monitor, its owner and runbook, how bad (severity) and why it
was sent; for each series worst first its count against the expected one and range, the
per-cent change, the direction and cause, why it was flagged and for how many days in a row;
the day's total against the expected total; a link to the day; the model that scored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd

from volume_monitor import results
from volume_monitor.alerting import policy
from volume_monitor.config import DEFAULT_MONITOR, MonitorSpec

MAX_LISTED = 25
MIN_GROUP = 3  # anomalous series of one segment that move the same way make a group line
MAX_RECOVERED_NAMED = 10  # series back to normal named in an alert; the rest are counted
PREFIX = "[volume-monitor]"


@dataclass(frozen=True)
class Scored:
    """A monitor's scored day, as an alert needs it."""

    monitor: MonitorSpec
    day: dt.date
    scored: pd.DataFrame
    dimensions: list[str]
    decision: policy.Decision
    model: str  # e.g. "models:/volume-monitor@production (version 3)"
    folder: Path
    model_version: str = ""
    # per listed series (its labels in dimension order): days in a row it has been anomalous
    days_off: dict[tuple[str, ...], int] = field(default_factory=dict)
    # the monitor's last alert (its date) and its series that are back to normal since
    recovered: tuple[str, list[str]] = ("", [])
    notes: tuple[str, ...] = ()  # what the model says of itself: its alert levels, its history


@dataclass(frozen=True)
class SeriesLine:
    """One anomalous series of an alert."""

    labels: dict[str, str]  # dimension -> value, in dimension order
    count: int
    expected: float | None
    expected_low: float | None
    expected_high: float | None
    direction: str
    cause: str
    deviation: float | None  # in spreads of its own history
    score: float
    why: str  # why it was flagged: how far outside its range, or moved with its group
    days_off: int = 0  # days in a row it has been anomalous, this one included
    link: str = ""

    @property
    def name(self) -> str:
        """The labels joined by ``/``, on one line."""
        return one_line("/".join(self.labels.values()))

    @property
    def change(self) -> float | None:
        """The change against the expected count, as a fraction (-1.0: nothing left)."""
        if self.expected is None or not self.expected > 0:
            return None
        return (self.count - self.expected) / self.expected

    @property
    def expected_range(self) -> str:
        if self.expected_low is None or self.expected_high is None:
            return "n/a"
        return f"{self.expected_low:.0f}-{self.expected_high:.0f}"


@dataclass(frozen=True)
class Total:
    """A day's whole volume against what was expected of it."""

    count: int
    expected: float | None
    low: float | None
    high: float | None

    @property
    def change(self) -> float | None:
        if self.expected is None or not self.expected > 0:
            return None
        return (self.count - self.expected) / self.expected


@dataclass(frozen=True)
class Alert:
    """What a channel says about one monitor on one day: an ``alert``, or the ``resolved``
    notice of the alerts of ``resolves`` (their dates) once the monitor is back to normal."""

    kind: str
    monitor: str
    date: str
    headline: str  # e.g. "orders 2026-06-30: 3 anomalous series, worst DE/paypal low"
    severity: str | None
    summary: list[str]  # what happened and why it was sent, one sentence a line
    model: str
    model_version: str
    owner: str = ""
    runbook: str = ""
    dimensions: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    series: list[SeriesLine] = field(default_factory=list)
    more: int = 0  # anomalous series not listed
    total: Total | None = None
    missing_day: bool = False
    stalled: list[str] = field(default_factory=list)
    silenced: int = 0
    link: str = ""
    folder: str = ""
    images: list[str] = field(default_factory=list)
    resolves: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # series back to normal since the last alert
    late: str = ""  # why it is delivered late: the failure that kept it

    @property
    def subject(self) -> str:
        late = " LATE" if self.late else ""
        return f"{PREFIX}{late} {self.headline}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Alert:
        """An alert kept as JSON; ``ValueError`` (or ``TypeError``/``KeyError``) when the text
        is not one."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an alert")
        data["series"] = [SeriesLine(**line) for line in data.get("series", [])]
        data["total"] = Total(**data["total"]) if data.get("total") else None
        return cls(**data)


def day_link(base_url: str, monitor: str, day: str) -> str:
    """The web page of ``monitor``'s ``day``; empty without a base URL."""
    return f"{base_url}/monitors/{quote(monitor)}/days/{day}" if base_url else ""


def series_link(base_url: str, monitor: str, labels: dict[str, str]) -> str:
    return f"{base_url}/monitors/{quote(monitor)}/series?{urlencode(labels)}" if base_url else ""


def build(case: Scored, severity: str, images: Sequence[Path], base_url: str = "") -> Alert:
    """The alert of an alerting day."""
    listed, more = to_list(case)
    name = case.monitor.name
    lines = [_series_line(row, case, base_url) for _, row in listed.iterrows()]
    stalled = policy.stalled_segments(case.scored, case.dimensions)
    return Alert(
        kind="alert",
        monitor=name,
        date=case.day.isoformat(),
        headline=_headline(case, lines, len(lines) + more, stalled),
        severity=severity,
        summary=_summary(case, severity, stalled),
        model=case.model,
        model_version=case.model_version,
        owner=case.monitor.owner,
        runbook=case.monitor.runbook,
        dimensions=list(case.dimensions),
        groups=group_lines(case.scored, case.dimensions),
        series=lines,
        more=more,
        total=_total(case.scored),
        missing_day=case.decision.missing_day,
        stalled=[segment for segment, _ in stalled],
        silenced=case.decision.silenced,
        link=day_link(base_url, name, case.day.isoformat()),
        folder=str(case.folder),
        images=[str(path) for path in images],
        recovered=[one_line(name) for name in case.recovered[1]],
    )


def resolved(
    monitor: MonitorSpec, day: dt.date, resolves: Sequence[dt.date], model: str,
    model_version: str, folder: Path, base_url: str = "",
) -> Alert:  # fmt: skip
    """The notice that ``monitor`` is back to normal on ``day`` after alerting on
    ``resolves``."""
    since = ", ".join(d.isoformat() for d in resolves)
    who = "" if monitor.name == DEFAULT_MONITOR else f"{monitor.name} "
    return Alert(
        kind="resolved",
        monitor=monitor.name,
        date=day.isoformat(),
        headline=f"{who}{day}: resolved, back to normal (alerted {since})",
        severity=None,
        summary=[
            f"volume-monitor scored {day} for the monitor {monitor.name} with {model}: every "
            f"series is inside its expected range again. The alert of {since} is resolved."
        ],
        model=model,
        model_version=model_version,
        owner=monitor.owner,
        runbook=monitor.runbook,
        link=day_link(base_url, monitor.name, day.isoformat()),
        folder=str(folder),
        resolves=[d.isoformat() for d in resolves],
    )


def to_list(case: Scored) -> tuple[pd.DataFrame, int]:
    """The anomalous series an alert lists, worst first (sendable, not explained by a missing
    day or a stalled segment, at most ``MAX_LISTED``), and how many more there are."""
    scored, dimensions = case.scored, case.dimensions
    explained = policy.inhibited_rows(scored, dimensions, case.decision.missing_day)
    anomalous = results.worst_first(scored[policy.sendable(scored) & ~explained])
    listed = anomalous.head(MAX_LISTED)
    return listed, len(anomalous) - len(listed)


def series_labels(row: pd.Series, dimensions: Sequence[str]) -> tuple[str, ...]:
    """A series' labels in dimension order: how ``Scored.days_off`` keys it."""
    return tuple(str(row[d]) for d in dimensions)


def group_lines(scored: pd.DataFrame, dimensions: Sequence[str]) -> list[str]:
    """One line per value of the first dimension where at least ``MIN_GROUP`` series are
    anomalous in the same direction, e.g. ``channelid=web: 31 of 32 series high (mostly
    duplicate)``; with a single dimension, one line for all series. Counted in one pass over
    the day, whatever the number of values (a dimension of ids has one group per series)."""
    first = dimensions[0] if len(dimensions) > 1 else None
    group = scored[first] if first else pd.Series("all series", index=scored.index)
    sizes = group.value_counts()
    anomalous = scored[policy.sendable(scored)]
    moved = anomalous.groupby([group[anomalous.index], anomalous["direction"]], sort=True,
                              observed=True)["cause"]  # fmt: skip
    counted = moved.size()
    lines = []
    for (value, direction), found in counted[counted >= MIN_GROUP].items():
        causes = moved.get_group((value, direction))
        cause = causes.mode().iloc[0] if causes.any() else "anomalous"
        name = f"{first}={value}" if first else value
        lines.append(f"{name}: {found} of {sizes[value]} series {direction} (mostly {cause})")
    return lines


def why_flagged(row: pd.Series) -> str:
    """How far outside its own expected range a series is, as a share of the nearer bound
    (``100% under its range``), or that it moved with its group while inside it."""
    count, low, high = float(row["count"]), float(row["expected_low"]), float(row["expected_high"])
    if pd.isna(low) or pd.isna(high):
        return "no range: a series not seen in training"
    if count > high:
        return f"{(count - high) / high:.0%} over its range" if high > 0 else "over its range"
    if count < low:
        return f"{(low - count) / low:.0%} under its range"
    return "inside its range, moved with its group"


def percent(change: float | None) -> str:
    """`` (-42%)`` for a change; empty when there is none."""
    return f" ({change:+.0%})" if change is not None else ""


def total_line(total: Total) -> str:
    """``Day total: 9120 events, expected 12000 (range 10500-13600), -24%``."""
    if total.expected is None:
        return f"Day total: {total.count} events"
    change = f", {total.change:+.0%}" if total.change is not None else ""
    return (
        f"Day total: {total.count} events, expected {total.expected:.0f} "
        f"(range {total.low:.0f}-{total.high:.0f}){change}"
    )


def streak(days_off: int) -> str:
    return f"; off {days_off} days in a row" if days_off > 1 else ""


def one_line(text: str) -> str:
    """``text`` on one line: a label holding CR, LF or tabs cannot break a header or a
    message's layout."""
    return " ".join(str(text).split())


# --- parts -----------------------------------------------------------------------------


def _series_line(row: pd.Series, case: Scored, base_url: str) -> SeriesLine:
    labels = dict(zip(case.dimensions, series_labels(row, case.dimensions), strict=True))
    return SeriesLine(
        labels=labels,
        count=int(row["count"]),
        expected=_number(row.get("expected")),
        expected_low=_number(row["expected_low"]),
        expected_high=_number(row["expected_high"]),
        direction=str(row["direction"] or "n/a"),
        cause=str(row["cause"] or "anomalous"),
        deviation=_number(row["deviation"]),
        score=float(row["score"]),
        why=why_flagged(row),
        days_off=case.days_off.get(tuple(labels.values()), 0),
        link=series_link(base_url, case.monitor.name, labels),
    )


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _total(scored: pd.DataFrame) -> Total:
    known = scored["expected_low"].notna()

    def summed(column: str) -> float | None:
        if column not in scored.columns or not known.any():
            return None
        return float(np.nansum(scored.loc[known, column].to_numpy(dtype=float)))

    return Total(int(scored["count"].sum()), summed("expected"), summed("expected_low"),
                 summed("expected_high"))  # fmt: skip


def _headline(case: Scored, lines: list[SeriesLine], anomalies: int, stalled) -> str:
    """``orders 2026-06-30: 3 anomalous series, worst DE/paypal missing`` (the default
    monitor is not named)."""
    who = "" if case.monitor.name == DEFAULT_MONITOR else f"{case.monitor.name} "
    if case.decision.missing_day:
        text = f"{who}{case.day}: no data at all (missing day)"
    elif stalled:
        segment, series = stalled[0]
        others = f" and {len(stalled) - 1} more" if len(stalled) > 1 else ""
        text = f"{who}{case.day}: {segment} stopped, all {series} series{others}"
    elif not lines:
        text = f"{who}{case.day}: alert"
    else:
        worst = lines[0]
        text = (
            f"{who}{case.day}: {anomalies} anomalous series, worst {worst.name} {worst.direction}"
        )
    return one_line(text)


def _summary(case: Scored, severity: str, stalled) -> list[str]:
    day, scored, decision = case.day, case.scored, case.decision
    lines = [f"volume-monitor scored {day} for the monitor {case.monitor.name} with {case.model}."]
    if decision.missing_day:
        expected = float(scored["expected_low"].sum()), float(scored["expected_high"].sum())
        lines.append(
            f"No events at all were recorded for {day}: the query returned no rows, where "
            f"{expected[0]:.0f} to {expected[1]:.0f} events were expected over {len(scored)} "
            "series. Check that the loads ran and the pipeline is not stalled."
        )
    for segment, series in stalled:
        lines.append(
            f"{segment}: every one of its {series} series stopped or stalled (its series are "
            "not listed one by one)."
        )
    lines.append("Why this alert: " + "; ".join(decision.reasons) + ".")
    lines.append(f"Severity: {severity}.")
    since, names = case.recovered
    if names:
        shown = ", ".join(names[:MAX_RECOVERED_NAMED])
        more = (
            f" and {len(names) - MAX_RECOVERED_NAMED} more"
            if len(names) > MAX_RECOVERED_NAMED
            else ""
        )
        lines.append(f"Back inside their range since the alert of {since}: {shown}{more}.")
    if decision.silenced:
        lines.append(
            f"{decision.silenced} more anomalous series are silenced and not listed "
            "(volume-monitor silence list)."
        )
    lines.extend(case.notes)
    return [one_line(line) for line in lines]
