"""``volume-monitor silence add | list | expire``: silences checked and kept in the state
store, and listed for a person."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass

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
) -> Silence:
    """Keep a silence of ``monitor``'s series matching ``matchers`` (empty: all) up to
    ``until`` included; a :class:`ConfigError` for a dimension the monitor does not have, a
    day already past, or no reason."""
    unknown = sorted(set(matchers) - set(monitor.dimensions or matchers))
    if unknown:
        raise ConfigError(
            f"monitor {monitor.name!r} has no dimension {', '.join(unknown)}; "
            f"its dimensions: {', '.join(monitor.dimensions or ())}"
        )
    if until < today:
        raise ConfigError(f"--until {until} is already past (today is {today})")
    if not reason.strip():
        raise ConfigError("--reason must say why: it is shown with every silenced series")
    silence = Silence(monitor.name, dict(matchers), until, reason.strip(), _user())
    return dataclasses.replace(silence, id=store.add_silence(silence))


def expire(store: Store, silence_id: int) -> None:
    """End silence ``silence_id`` now, or a :class:`ConfigError` when none is active."""
    if not store.expire_silence(silence_id):
        raise ConfigError(f"there is no active silence #{silence_id} (volume-monitor silence list)")


def render(silences: list[Silence], today: dt.date) -> str:
    """One line per silence: id, monitor, what it matches, until, state, reason."""
    if not silences:
        return "no silences\n"
    lines = []
    for silence in silences:
        matches = ", ".join(f"{k}={v}" for k, v in silence.matchers.items()) or "(every series)"
        lines.append(
            f"#{silence.id}  {silence.monitor}  {matches}  until {silence.until}  "
            f"{_state(silence, today)}  {silence.reason}"
        )
    return "\n".join(lines) + "\n"


def _state(silence: Silence, today: dt.date) -> str:
    if silence.expired_at:
        return f"expired {silence.expired_at[:16]}"
    return "active" if silence.active_on(today) else "over"


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        return None
