"""``volume-monitor silence add | list | expire``: silences checked and kept in the state
store, and listed for a person."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
from collections.abc import Sequence

from volume_monitor.config import MonitorSpec
from volume_monitor.errors import ConfigError
from volume_monitor.state import Silence, Store


def add(
    store: Store,
    monitor: MonitorSpec,
    matchers: dict[str, str],
    until: dt.date,
    reason: str,
    today: dt.date,
    author: str | None = None,
) -> Silence:
    """Keep a silence of ``monitor``'s series matching ``matchers`` (empty: all) up to
    ``until`` included, asked by ``author`` (by default whoever runs the command); a
    :class:`ConfigError` for a dimension the monitor does not have, a day already past, or no
    reason."""
    check_dimensions(monitor.name, matchers, monitor.dimensions)
    if until < today:
        raise ConfigError(f"--until {until} is already past (today is {today})")
    if not reason.strip():
        raise ConfigError("--reason must say why: it is shown with every silenced series")
    silence = Silence(monitor.name, dict(matchers), until, reason.strip(), author or current_user())
    return dataclasses.replace(silence, id=store.add_silence(silence))


def check_dimensions(
    monitor: str, matchers: dict[str, str], dimensions: Sequence[str] | None
) -> None:
    """A :class:`ConfigError` for a matcher on a dimension the monitor does not have (not
    checked while its dimensions are unknown)."""
    unknown = sorted(set(matchers) - set(dimensions or matchers))
    if unknown:
        raise ConfigError(
            f"monitor {monitor!r} has no dimension {', '.join(unknown)}; "
            f"its dimensions: {', '.join(dimensions or ())}"
        )


def expire(store: Store, silence_id: int) -> None:
    """End silence ``silence_id`` now, or a :class:`ConfigError` when none is active."""
    if not store.expire_silence(silence_id):
        raise ConfigError(f"there is no active silence #{silence_id} (volume-monitor silence list)")


def render(silences: list[Silence], today: dt.date) -> str:
    """One line per silence: id, monitor, what it matches, until, state, reason."""
    if not silences:
        return "no silences\n"
    lines = [
        f"#{silence.id}  {silence.monitor}  {matched(silence.matchers)}  until {silence.until}  "
        f"{_state(silence, today)}  {silence.reason}"
        for silence in silences
    ]
    return "\n".join(lines) + "\n"


def matched(matchers: dict[str, str]) -> str:
    """``channelid=web, os_family=iOS``, or ``(every series)`` without matchers."""
    return ", ".join(f"{k}={v}" for k, v in matchers.items()) or "(every series)"


def _state(silence: Silence, today: dt.date) -> str:
    if silence.expired_at:
        return f"expired {silence.expired_at[:16]}"
    return "active" if silence.active_on(today) else "over"


def current_user() -> str | None:
    """Who runs the command, as the system knows them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        return None
