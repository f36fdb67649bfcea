"""Late data: whether a day was fully loaded when it was read, and when a day has settled.

A monitor may declare a freshness query (``freshness`` in ``monitors.yml``,
``VM_FRESHNESS_QUERY``): one ``SELECT`` bound to the same ``:start`` / ``:end`` as its
counts query, returning one value, the latest event time of the day (``MAX(created_at)``);
or a freshness column of its counts query (``freshness_column``, ``VM_FRESHNESS_COLUMN``), the
latest event of each row's group, whose largest value is the day's.
When that time is earlier than the day's end less ``late_tolerance_minutes``, the day is
*late*: its series are scored but none is anomalous (cause ``late``), the alert says so in one
line, and the nightly runs of the next ``RESCORE_DAYS`` days score it again until it is
complete. ``settle_hours`` keeps a nightly run from scoring a day until that many hours after
its end.

Times are wall-clock times in ``VM_TIMEZONE``, the zone in which the database starts its days;
a time with a zone is converted to it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pandas as pd

from volume_monitor import db
from volume_monitor.config import MonitorSpec
from volume_monitor.errors import QueryError

RESCORE_DAYS = 7  # a late day is scored again by the nightly runs of this many days after it


@dataclass(frozen=True)
class Freshness:
    """The latest event of ``day`` as read, against the day's end less ``tolerance``."""

    day: dt.date
    latest: dt.datetime | None
    tolerance: dt.timedelta

    @property
    def day_end(self) -> dt.datetime:
        return dt.datetime.combine(self.day + dt.timedelta(days=1), dt.time())

    @property
    def late(self) -> bool:
        """Whether the day's events stop before its end less the tolerance (a day without
        events is a missing day, not a late one)."""
        return self.latest is not None and self.latest < self.day_end - self.tolerance

    def reason(self) -> str:
        """The alert's line for a late day."""
        short = self.day_end - self.latest if self.latest else dt.timedelta()
        return (
            f"late data: the latest event is {self.latest:%Y-%m-%d %H:%M}, "
            f"{_duration(short)} before the day ends; scored again once complete"
        )


def read(engine, monitor: MonitorSpec, day: dt.date, timezone: str) -> Freshness:
    """``day`` as the monitor's freshness query finds it on ``engine``."""
    query = db.read_query(monitor.freshness_path)
    value = db.fetch_value(engine, query, day, day + dt.timedelta(days=1))
    return of_value(value, monitor, day, timezone)


def of_value(value: object, monitor: MonitorSpec, day: dt.date, timezone: str) -> Freshness:
    """``day`` whose latest event is ``value`` (a freshness query's, or the largest of the
    counts query's freshness column)."""
    tolerance = dt.timedelta(minutes=monitor.late_tolerance_minutes)
    return Freshness(day, latest_time(value, timezone), tolerance)


def latest_time(value: object, timezone: str) -> dt.datetime | None:
    """The freshness query's value as a wall-clock time in ``timezone``; None for NULL."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise QueryError(f"the freshness query returned {str(value)[:40]!r}, not a time") from None
    if pd.isna(stamp):
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert(ZoneInfo(timezone)).tz_localize(None)
    return stamp.to_pydatetime()


def settled_day(now: dt.datetime, settle_hours: float) -> dt.date:
    """The latest day whose end lies at least ``settle_hours`` before ``now`` (wall-clock
    time in the monitors' zone): yesterday with no settling time."""
    return (now - dt.timedelta(hours=settle_hours)).date() - dt.timedelta(days=1)


def _duration(span: dt.timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
