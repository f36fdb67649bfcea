"""What the state store keeps, as frozen dataclasses passed between modules: a scored day, a
delivery of the outbox, a verdict given back by a person, and a silence.

Timestamps are ISO 8601 strings in UTC (``2026-11-22T03:00:12+00:00``); dates are
:class:`datetime.date`. A series is named by its key: the canonical JSON of its dimension values
(see :func:`series_key`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from volume_monitor.clock import now_utc

DAY_KINDS = ("nightly", "dry run", "backfill")
DELIVERY_KINDS = ("alert", "resolved")
# "withdrawn": a re-score found the day normal before its alert could be delivered;
# "handed over": the message left and its receipt was never confirmed (never sent again);
# "abandoned": it can never be sent (a damaged record, a channel no longer configured).
DELIVERY_STATUSES = ("pending", "sent", "failed", "withdrawn", "handed over", "abandoned")
UNDELIVERED = ("pending", "failed")
DELIVERED = ("sent", "handed over")
VERDICTS = ("normal", "expected", "incident", "new-level")
COUNT_SOURCES = ("train", "scored")


def series_key(values: Mapping[str, str]) -> str:
    """The key of the series whose dimension values are ``values`` (in dimension order), e.g.
    ``{"channelid":"web","actioncode":"view","os_family":"Windows"}``: exact strings, so any
    label (quotes, unicode, ``NA``) names one series only."""
    return json.dumps(dict(values), ensure_ascii=False, separators=(",", ":"))


def to_json(value: Any) -> str:
    """``value`` as JSON text (unicode kept); numpy scalars and dates are converted."""
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy and pandas scalars
        return value.item()
    return str(value)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


@dataclass(frozen=True)
class DayRecord:
    """One scored day of a monitor: who scored it, with which model, and what it found.
    ``summary`` is the day's whole ``summary.json``."""

    monitor: str
    date: dt.date
    scored_at: str
    kind: str
    model_uri: str
    model_version: str
    run_id: str
    rows: int
    anomalies: int
    alert: bool
    missing_day: bool
    summary: dict[str, Any]

    def __post_init__(self) -> None:
        _check("kind", self.kind, DAY_KINDS)


@dataclass(frozen=True)
class Delivery:
    """One notification of the outbox, identified by (monitor, date, channel, kind): sent once,
    retried while ``pending`` or ``failed``, never once ``withdrawn``. ``payload`` is what to
    send, as the caller's JSON; ``attempts`` is counted by the caller."""

    monitor: str
    date: dt.date
    channel: str
    kind: str
    status: str
    attempts: int = 0
    last_error: str | None = None
    payload: str | None = None
    model_version: str | None = None
    created_at: str = field(default_factory=now_utc)
    sent_at: str | None = None

    def __post_init__(self) -> None:
        _check("kind", self.kind, DELIVERY_KINDS)
        _check("status", self.status, DELIVERY_STATUSES)


@dataclass(frozen=True)
class Feedback:
    """A verdict a person gave on a day of ``monitor``, on the series whose labels hold every
    ``matchers`` pair (dimension -> value; empty: all of them): ``normal`` (a false alarm),
    ``expected`` (a known event), ``incident`` (a real fault, to keep out of training) or
    ``new-level`` (the series' baseline restarts that day). ``id`` is set by the store."""

    monitor: str
    date: dt.date
    verdict: str
    matchers: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    author: str | None = None
    created_at: str = field(default_factory=now_utc)
    id: int | None = None

    def __post_init__(self) -> None:
        _check("verdict", self.verdict, VERDICTS)


@dataclass(frozen=True)
class Silence:
    """Alerts of ``monitor`` whose series match every ``matchers`` pair (dimension -> value;
    empty: the whole monitor) are silenced up to ``until`` included, unless expired earlier
    (``expired_at``). ``id`` is set by the store."""

    monitor: str
    matchers: dict[str, str]
    until: dt.date
    reason: str
    created_by: str | None = None
    created_at: str = field(default_factory=now_utc)
    expired_at: str | None = None
    id: int | None = None

    def active_on(self, day: dt.date) -> bool:
        """Whether the silence applies to ``day``."""
        return self.expired_at is None and day <= self.until
