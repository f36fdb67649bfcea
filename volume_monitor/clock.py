"""Days as the monitor counts them: in ``VM_TIMEZONE``, the zone in which the database's
``DATE(created_at)`` starts its days."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from volume_monitor.config import Settings
from volume_monitor.errors import ConfigError


def today(settings: Settings) -> dt.date:
    """Today's date in ``VM_TIMEZONE``."""
    return dt.datetime.now(ZoneInfo(settings.timezone)).date()


def now_local(settings: Settings) -> dt.datetime:
    """The wall-clock time now in ``VM_TIMEZONE``, without its zone."""
    return dt.datetime.now(ZoneInfo(settings.timezone)).replace(tzinfo=None)


def yesterday(settings: Settings) -> dt.date:
    """The last whole day in ``VM_TIMEZONE``: what a nightly run scores."""
    return today(settings) - dt.timedelta(days=1)


def check_over(settings: Settings, day: dt.date) -> None:
    """Refuse a day that is not over yet: its counts are still growing."""
    if day >= today(settings):
        raise ConfigError(
            f"{day} is not over yet in {settings.timezone}: the latest day to score is "
            f"{yesterday(settings)}"
        )


def now_utc() -> str:
    """The current time in UTC, as ISO 8601 to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
