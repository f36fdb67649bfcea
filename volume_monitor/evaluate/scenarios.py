"""Labeled histories: daily counts per series with faults injected at known days and series of a
held-back window, and the days that look odd but are normal (a public holiday, a channel that
moves as a whole for a day, a day read before it was fully loaded).

The demo world (:func:`make_scenario`) adds what real segments do and the demo database does
not: each channel shares a day-to-day factor among its series, now and then moves by 15-25%
as a whole for a day (weather, a campaign, school holidays), and changes its level on the
public holidays of ``HOLIDAY_COUNTRY``, every year alike.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import holidays
import numpy as np
import pandas as pd

from volume_monitor import etl
from volume_monitor.demo import DemoSpec, Fault, expected_counts

LAST_DAY = dt.date(2026, 6, 30)
HOLIDAY_COUNTRY = "US"
HOLIDAY_EFFECT = {"web": 0.5, "mobile": 1.15, "api": 0.3}  # a channel's level on a holiday
CHANNEL_NOISE = 0.03  # the log-normal day-to-day factor a channel's series share
MOVE_CHANCE = 1 / 8  # the share of days on which one channel moves as a whole
MOVE_SIZE = (0.15, 0.25)  # by this much, up or down
WINDOW_MOVE_CHANCE = 1 / 3  # in the window, more often: enough such days to count the alerts
LOADED_BY_20H = 0.85  # the share of a day's events logged by 20:00
# Kinds that are not faults: counted neither as hits nor as misses, and an alert on them is a
# false alert.
NOT_ANOMALIES = ("", "new_channel", "holiday", "correlated_move", "late")
IGNORED = ("leak_onset",)  # the first days of a leak: too small to call either way
LEAK_COUNTED_FROM = 0.3  # a leak day is a fault once the drop reaches 30%
INCIDENT_DAYS = 14  # the duplicated load inside the training window, ending ...
INCIDENT_GAP = 10  # ... this many days before the window


@dataclass(frozen=True)
class Scenario:
    """A history of daily counts per series (rows with count 0 left out, as a query returns
    them), the held-back window, one label per faulty or odd series-day, the public holidays
    of the world's country (empty: none known), the days read before they were loaded, and
    the country (and subdivision) whose holidays a monitor of this world declares."""

    counts: pd.DataFrame
    window_start: pd.Timestamp
    last_day: pd.Timestamp
    labels: pd.DataFrame
    holidays: tuple[dt.date, ...] = ()
    late_days: tuple[dt.date, ...] = ()
    holiday_country: str = ""


def make_scenario(seed: int, days: int = 400, held_back: int = 60, events_per_day: int = 20_000):
    """A seeded demo world (shared channel noise, whole-channel moves, public holidays) with
    each fault kind injected once in the last ``held_back`` days, a correlated whole-channel
    move on about a third of the other window days, and a day read at 20:00."""
    spec = DemoSpec(LAST_DAY, days=days, events_per_day=events_per_day, seed=seed, faults=[])
    rng = np.random.default_rng(seed)
    dates = pd.date_range(LAST_DAY - dt.timedelta(days=days - 1), periods=days)
    free_day = _holidays(dates)
    channels = sorted({s[0] for s in spec.series})
    factors = _channel_factors(rng, dates, channels, free_day, dates[-held_back])
    of_channel = [channels.index(s[0]) for s in spec.series]
    counts = rng.poisson(expected_counts(spec, rng) * factors[:, of_channel])
    history = pd.DataFrame(
        [
            (date, *series[:3], int(count))
            for date, row in zip(dates, counts, strict=True)
            for series, count in zip(spec.series, row, strict=True)
        ],
        columns=["date", *etl.SERIES_KEYS, "count"],
    )
    scenario = inject_scenario(history, rng, held_back, busy=set(free_day))
    return _with_world_days(scenario, rng, free_day, channels)


def inject_scenario(
    history: pd.DataFrame, rng: np.random.Generator, held_back: int, busy: set | None = None
) -> Scenario:
    """``history`` (one row per date and series) with one fault of each kind injected in its
    last ``held_back`` days (none on the ``busy`` dates), an incident inside the training
    window that one window fault repeats, and a new channel appearing near the end."""
    dates = pd.DatetimeIndex(sorted(history["date"].unique()))
    window, last = dates[-held_back], dates[-1]
    shares = history.groupby(etl.SERIES_KEYS)["count"].mean()
    series = [(*keys, share) for keys, share in shares.items()]
    faults = _schedule(rng, series, window.date(), busy or set())
    counts = _apply(history, faults)
    new = _new_channel(rng, last.date() - dt.timedelta(days=5), last.date())
    labels = pd.concat(
        [
            _labels(series, [f for f in faults if f.date >= window.date()]),
            new.assign(kind="new_channel")[["date", *etl.SERIES_KEYS, "kind"]],
        ]
    )
    counts = pd.concat([counts[counts["count"] > 0], new], ignore_index=True)
    return Scenario(counts, window, last, labels)


def _holidays(dates: pd.DatetimeIndex) -> dict[pd.Timestamp, str]:
    """The public holidays of ``HOLIDAY_COUNTRY`` among ``dates``."""
    calendar = holidays.country_holidays(HOLIDAY_COUNTRY, years=sorted({d.year for d in dates}))
    return {d: calendar[d.date()] for d in dates if d.date() in calendar}


def _channel_factors(
    rng: np.random.Generator,
    dates: pd.DatetimeIndex,
    channels: list[str],
    free_day: dict,
    window: pd.Timestamp,
) -> np.ndarray:
    """Per day and channel, the factor all of the channel's series share: its day-to-day
    noise, a whole-channel move of ``MOVE_SIZE`` on about ``MOVE_CHANCE`` of the days before
    the ``window`` (where the moves are placed and labeled later), and its
    ``HOLIDAY_EFFECT`` on a public holiday."""
    factors = rng.lognormal(0.0, CHANNEL_NOISE, size=(len(dates), len(channels)))
    for row, date in enumerate(dates):
        if date in free_day:
            factors[row] *= [HOLIDAY_EFFECT.get(c, 1.0) for c in channels]
        elif date < window and rng.random() < MOVE_CHANCE:
            factors[row, rng.integers(len(channels))] *= _move(rng)
    return factors


def _move(rng: np.random.Generator) -> float:
    return 1.0 + rng.choice([-1.0, 1.0]) * rng.uniform(*MOVE_SIZE)


def _with_world_days(
    scenario: Scenario, rng: np.random.Generator, free_day: dict, channels: list[str]
) -> Scenario:
    """``scenario`` with the window's odd but normal days labeled: its public holidays, a
    whole-channel move on about one fault-free day in three, and one day read at 20:00."""
    counts, labels = scenario.counts, scenario.labels
    window = pd.date_range(scenario.window_start, scenario.last_day)
    taken = set(labels["date"]) | set(free_day)
    free = [d for d in window if d not in taken]
    late = free[-1]
    moved = [d for d in free[:-1] if rng.random() < WINDOW_MOVE_CHANCE]
    counts = counts.assign(count=counts["count"].astype(float))
    rows = []
    for day in moved:
        channel = channels[rng.integers(len(channels))]
        match = (counts["date"] == day) & (counts["channelid"] == channel)
        counts.loc[match, "count"] = np.round(counts.loc[match, "count"] * _move(rng))
        rows.append(counts.loc[match, ["date", *etl.SERIES_KEYS]].assign(kind="correlated_move"))
    on_late = counts["date"] == late
    counts.loc[on_late, "count"] = np.round(counts.loc[on_late, "count"] * LOADED_BY_20H)
    rows.append(counts.loc[on_late, ["date", *etl.SERIES_KEYS]].assign(kind="late"))
    for day in (d for d in window if d in free_day):
        rows.append(counts.loc[counts["date"] == day, ["date", *etl.SERIES_KEYS]])
        rows[-1] = rows[-1].assign(kind="holiday")
    counts = counts.assign(count=counts["count"].astype("int64"))
    return Scenario(
        counts=counts[counts["count"] > 0].reset_index(drop=True),
        window_start=scenario.window_start,
        last_day=scenario.last_day,
        labels=pd.concat([labels, *rows], ignore_index=True),
        holidays=tuple(sorted(d.date() for d in free_day)),
        late_days=(late.date(),),
        holiday_country=HOLIDAY_COUNTRY,
    )


def _apply(history: pd.DataFrame, faults: list[Fault]) -> pd.DataFrame:
    """``history`` with each fault's factor applied to the counts of its date and series."""
    counts = history["count"].to_numpy(dtype=float).copy()
    for fault in faults:
        match = (history["date"] == pd.Timestamp(fault.date)).to_numpy()
        for key, wanted in zip(etl.SERIES_KEYS, fault.segment, strict=True):
            if wanted is not None:
                match = match & (history[key] == wanted).to_numpy()
        counts[match] = np.round(counts[match] * fault.factor)
    return history.assign(count=counts.astype("int64"))


# The window's faults: the day each starts on (shifted past busy days) and what it is.
SCHEDULE = (5, 12, 19, 26, 33, 36, 44, 46, 51)


def _schedule(
    rng: np.random.Generator, series: list[tuple], window: dt.date, busy: set
) -> list[Fault]:
    """One fault of each kind, on busy series drawn at random, a few days apart and never on
    a ``busy`` date; and a two-week duplicated load inside the training window that the window
    repeats."""
    median_share = np.median([s[3] for s in series])
    heavy = [s[:3] for s in series if s[3] >= median_share]
    channel, action, _ = heavy[rng.integers(len(heavy))]
    stalled, stopped = heavy[rng.integers(len(heavy))], heavy[rng.integers(len(heavy))]
    channels = sorted({s[0] for s in series})
    duplicated, leaking, moving, repeated = (channels[rng.integers(len(channels))] for _ in "1234")
    repeated_action = sorted({s[1] for s in series if s[0] == repeated})[0]
    days = _free_days(window, busy, leak_days=7)
    incident_end = window - dt.timedelta(days=INCIDENT_GAP)
    return [
        Fault(days["duplicate"], "duplicate", 2.0, channelid=duplicated),
        Fault(days["partial_duplicate"], "partial_duplicate", 1.3, channel, action),
        Fault(days["stall"], "stall", 0.05, channelid=stalled[0], os_family=stalled[2]),
        Fault(days["stopped"], "stopped", 0.0, *stopped),
        Fault(days["missing_day"], "missing_day", 0.0),
        *[
            Fault(days["leak"] + dt.timedelta(days=k), "leak", 1.0 - 0.1 * k, channelid=leaking)
            for k in range(7)
        ],
        Fault(days["day_drop"], "day_drop", 0.6),
        Fault(days["channel_move"], "channel_move", rng.uniform(1.5, 1.6), channelid=moving),
        *[
            Fault(incident_end - dt.timedelta(days=k), "incident", 2.0, repeated, repeated_action)
            for k in range(INCIDENT_DAYS)
        ],
        Fault(days["repeat_incident"], "repeat_incident", 2.0, repeated, repeated_action),
    ]


def _free_days(window: dt.date, busy: set, leak_days: int) -> dict[str, dt.date]:
    """The first day of each window fault: its ``SCHEDULE`` offset, moved later past any busy
    date (and, for the leak, past any busy date in its ``leak_days``)."""
    kinds = (
        "duplicate", "partial_duplicate", "stall", "stopped", "missing_day", "leak", "day_drop",
        "channel_move", "repeat_incident",
    )  # fmt: skip
    busy_days = {pd.Timestamp(d).date() for d in busy}
    taken: set[dt.date] = set()
    days = {}
    for kind, offset in zip(kinds, SCHEDULE, strict=True):
        length = leak_days if kind == "leak" else 1
        start = window + dt.timedelta(days=offset)
        while any(start + dt.timedelta(days=k) in busy_days | taken for k in range(length)):
            start += dt.timedelta(days=1)
        days[kind] = start
        taken |= {start + dt.timedelta(days=k) for k in range(length)}
    return days


def _labels(series: list[tuple], faults: list[Fault]) -> pd.DataFrame:
    """One row per faulty series-day. A leak day counts once the drop reaches
    ``LEAK_COUNTED_FROM``; its smaller first days are ``leak_onset``."""
    rows = []
    for fault in faults:
        kind = fault.kind
        if kind == "leak" and fault.factor > 1.0 - LEAK_COUNTED_FROM + 1e-9:
            kind = "leak_onset"
        for keys in series:
            if all(w is None or w == v for w, v in zip(fault.segment, keys[:3], strict=True)):
                rows.append((pd.Timestamp(fault.date), *keys[:3], kind))
    return pd.DataFrame(rows, columns=["date", *etl.SERIES_KEYS, "kind"])


def _new_channel(rng: np.random.Generator, start: dt.date, end: dt.date) -> pd.DataFrame:
    """A channel that appears at ``start``: reported as new, never paged as an anomaly."""
    dates = pd.date_range(start, end)
    rows = [
        (date, "partner", action, family, int(rng.poisson(base)))
        for date in dates
        for action, family, base in (("view", "Other", 300), ("search", "Linux", 80))
    ]
    return pd.DataFrame(rows, columns=["date", *etl.SERIES_KEYS, "count"])
