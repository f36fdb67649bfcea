"""A demo ``activityhistory`` database: raw events with realistic user agents, weekly
seasonality, a trend, noise, and injected faults recorded in ``anomaly_labels``.

Deterministic for a seed. Events are generated per day as arrays and inserted in batches,
so the table can grow to millions of rows quickly. Works on any SQLAlchemy URL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    inspect,
)
from sqlalchemy.engine import Engine

from volume_monitor.config import redact_url
from volume_monitor.errors import ConfigError

log = logging.getLogger(__name__)

metadata = MetaData()
activityhistory = Table(
    "activityhistory",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime, nullable=False),
    Column("channelid", String(32), nullable=False),
    Column("actioncode", String(32), nullable=False),
    Column("user_agent", String(512)),
    Index("ix_activityhistory_created_at", "created_at"),
)
anomaly_labels = Table(
    "anomaly_labels",
    metadata,
    Column("date", Date, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("channelid", String(32)),
    Column("actioncode", String(32)),
    Column("os_family", String(32)),
    Column("factor", Float, nullable=False),
)

CHANNELS = {"web": 0.55, "mobile": 0.35, "api": 0.10}
ACTIONS = {"view": 0.55, "search": 0.25, "login": 0.15, "purchase": 0.05}
OS_MIX = {
    "web": {
        "Windows": 0.42,
        "Mac OS X": 0.20,
        "iOS": 0.10,
        "Android": 0.12,
        "Linux": 0.05,
        "Chrome OS": 0.05,
        "Ubuntu": 0.03,
        "Other": 0.03,
    },
    "mobile": {"iOS": 0.47, "Android": 0.48, "Other": 0.05},
    "api": {"Other": 0.75, "Linux": 0.25},
}
EVERY_FAMILY = {family: 1 / 8 for family in OS_MIX["web"]}  # for channels beyond the three
WEEKLY = {  # Monday .. Sunday
    "web": (1.0, 1.02, 1.03, 1.0, 0.96, 0.72, 0.66),
    "mobile": (0.95, 0.96, 0.97, 0.98, 1.0, 1.08, 1.1),
    "api": (1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5),
}
FLAT = (1.0,) * 7
TEMPLATES = {
    "Windows": [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{a}.0) Gecko/20100101 Firefox/{a}.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.0.0 Safari/537.36 Edg/{a}.0.{b}.{c}",
    ],
    "Mac OS X": [
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{d}) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/{e}.{d} Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{d}) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/{a}.0.{b}.{c} Safari/537.36",
    ],
    "iOS": [
        "Mozilla/5.0 (iPhone; CPU iPhone OS {e}_{d} like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/{e}.{d} Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS {e}_{d} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/{e}.{d} Mobile/15E148 Safari/604.1",
    ],
    "Android": [
        "Mozilla/5.0 (Linux; Android {f}; SM-S9{d}1B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android {f}; Pixel {d}) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Mobile Safari/537.36",
    ],
    "Linux": [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.0",
    ],
    "Chrome OS": [
        "Mozilla/5.0 (X11; CrOS x86_64 {b}.{c}.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.0.0 Safari/537.36",
    ],
    "Ubuntu": [
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.0",
    ],
    "Other": [
        "python-requests/2.{a}.{d}",
        "curl/8.{d}.{e}",
        "Go-http-client/1.1",
        "",
        None,
    ],
}


@dataclass(frozen=True)
class Fault:
    """An injected fault: ``factor`` multiplies the matching series' counts on ``date``
    (2 = duplicated load, 0.05 = stall, 0 with no filters = missing day)."""

    date: dt.date
    kind: str
    factor: float
    channelid: str | None = None
    actioncode: str | None = None
    os_family: str | None = None


def default_faults(last_day: dt.date) -> list[Fault]:
    """The demo's faults: a duplicated load on the last day (so the demo alerts), a stalled
    segment, a missing day and an earlier duplicated load."""
    return [
        Fault(last_day, "duplicate", 2.0, channelid="web"),
        Fault(last_day - dt.timedelta(days=14), "stall", 0.05, "mobile", os_family="Android"),
        Fault(last_day - dt.timedelta(days=30), "missing_day", 0.0),
        Fault(last_day - dt.timedelta(days=60), "duplicate", 2.0, channelid="mobile"),
    ]


@dataclass
class DemoSpec:
    """What to generate: ``days`` days ending with ``last_day``."""

    last_day: dt.date
    days: int = 400
    events_per_day: int = 5000
    seed: int = 7
    faults: list[Fault] | None = None
    agents_per_family: int = 60
    channels: dict[str, float] = field(default_factory=lambda: dict(CHANNELS))
    actions: dict[str, float] = field(default_factory=lambda: dict(ACTIONS))
    series: list[tuple[str, str, str, float]] = field(init=False)

    def __post_init__(self):
        if self.faults is None:
            self.faults = default_faults(self.last_day)
        self.series = [
            (channel, action, family, c_share * a_share * o_share)
            for channel, c_share in self.channels.items()
            for action, a_share in self.actions.items()
            for family, o_share in OS_MIX.get(channel, EVERY_FAMILY).items()
        ]


def agent_pool(
    rng: np.random.Generator, per_family: int, templates_of: dict | None = None
) -> dict[str, list[str | None]]:
    """Distinct user-agent strings per OS family (``templates_of``, by default
    :data:`TEMPLATES`), versions drawn at random."""
    pool = {}
    for family, templates in (templates_of or TEMPLATES).items():
        agents: list[str | None] = []
        for i in range(per_family):
            template = templates[i % len(templates)]
            if template is None:
                agents.append(None)
                continue
            digits = rng.integers([100, 4000, 10, 1, 14, 10], [130, 6500, 200, 8, 18, 15])
            agents.append(template.format(**dict(zip("abcdef", digits.tolist(), strict=True))))
        pool[family] = list(dict.fromkeys(agents))
    return pool


def expected_counts(spec: DemoSpec, rng: np.random.Generator) -> np.ndarray:
    """Expected events per (day, series): shares × weekday × trend × yearly wave × noise."""
    first = spec.last_day - dt.timedelta(days=spec.days - 1)
    dates = [first + dt.timedelta(days=i) for i in range(spec.days)]
    t = np.arange(spec.days) / 365.0
    trend = 1.0 + 0.15 * t + 0.05 * np.sin(2 * np.pi * (t + 0.2))
    shares = np.array([s[3] for s in spec.series])
    weekly = np.array([[WEEKLY.get(s[0], FLAT)[d.weekday()] for s in spec.series] for d in dates])
    noise = rng.lognormal(0.0, 0.04, size=weekly.shape)
    return spec.events_per_day * trend[:, None] * shares[None, :] * weekly * noise


def apply_faults(counts: np.ndarray, spec: DemoSpec, first: dt.date) -> np.ndarray:
    counts = counts.copy()
    for fault in spec.faults or []:
        row = (fault.date - first).days
        if not 0 <= row < len(counts):
            continue
        match = np.array([_matches(fault, s) for s in spec.series])
        counts[row, match] = np.round(counts[row, match] * fault.factor).astype(counts.dtype)
    return counts


def _matches(fault: Fault, series: tuple[str, str, str, float]) -> bool:
    wanted = (fault.channelid, fault.actioncode, fault.os_family)
    return all(w is None or w == v for w, v in zip(wanted, series[:3], strict=True))


def write_demo(engine: Engine, spec: DemoSpec, batch_days: int = 20, replace: bool = False) -> int:
    """Replace ``activityhistory`` and ``anomaly_labels`` with generated data; return the
    number of events written. An ``activityhistory`` that is not from a demo (no
    ``anomaly_labels`` beside it) is only replaced when ``replace`` is true."""
    if not replace and _holds_real_events(engine):
        raise ConfigError(
            f"{redact_url(engine.url.render_as_string(hide_password=False))} already has an "
            "activityhistory table that the demo did not write; pass --replace to overwrite it"
        )
    began = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    pool = agent_pool(rng, spec.agents_per_family)
    first = spec.last_day - dt.timedelta(days=spec.days - 1)
    counts = apply_faults(rng.poisson(expected_counts(spec, rng)), spec, first)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    written = 0
    with engine.begin() as connection:
        for start in range(0, spec.days, batch_days):
            days = range(start, min(start + batch_days, spec.days))
            written += insert_events(connection, _events(rng, spec, pool, first, counts, days))
        labels = [_label(f) for f in spec.faults or [] if first <= f.date <= spec.last_day]
        if labels:
            connection.execute(insert(anomaly_labels), labels)
    log.info(
        "demo: %d events over %d days (%s..%s), %d faults in %.1fs",
        written,
        spec.days,
        first,
        spec.last_day,
        len(labels),
        time.perf_counter() - began,
    )
    return written


def _events(rng, spec, pool, first, counts, day_rows) -> dict[str, list]:
    """The raw events of the given days, column by column."""
    channels = np.array([s[0] for s in spec.series], dtype=object)
    actions = np.array([s[1] for s in spec.series], dtype=object)
    per_day = counts[list(day_rows)]
    days = np.repeat(
        np.array([first + dt.timedelta(days=r) for r in day_rows], "datetime64[s]"),
        per_day.sum(axis=1),
    )
    series_of_event = np.concatenate([np.repeat(np.arange(len(spec.series)), c) for c in per_day])
    stamps = days + rng.integers(0, 86_400, size=len(days)).astype("timedelta64[s]")
    return {
        "created_at": np.char.replace(np.datetime_as_string(stamps, unit="s"), "T", " ").tolist(),
        "channelid": channels[series_of_event].tolist(),
        "actioncode": actions[series_of_event].tolist(),
        "user_agent": _agents_for(rng, spec, pool, series_of_event).tolist(),
    }


def events_of_day(rng, spec: DemoSpec, pool, day: dt.date, total: int) -> dict[str, list]:
    """``total`` raw events of one day, spread over the series by their shares, column by
    column (as :func:`insert_events` takes them)."""
    shares = np.array([s[3] for s in spec.series])
    series_of_event = rng.choice(len(spec.series), size=total, p=shares / shares.sum())
    start = np.datetime64(day, "s")
    stamps = start + rng.integers(0, 86_400, size=total).astype("timedelta64[s]")
    channels = np.array([s[0] for s in spec.series], dtype=object)
    actions = np.array([s[1] for s in spec.series], dtype=object)
    return {
        "created_at": np.char.replace(np.datetime_as_string(stamps, unit="s"), "T", " ").tolist(),
        "channelid": channels[series_of_event].tolist(),
        "actioncode": actions[series_of_event].tolist(),
        "user_agent": _agents_for(rng, spec, pool, series_of_event).tolist(),
    }


def insert_events(connection, columns: dict[str, list]) -> int:
    """Insert events given column-wise; SQLite takes plain tuples through its driver and
    PostgreSQL (psycopg2) a COPY, the fastest paths; other databases SQLAlchemy's batched
    multi-row inserts."""
    rows = list(zip(*columns.values(), strict=True))
    if not rows:
        return 0
    if connection.dialect.driver == "psycopg2":
        return _copy_events(connection, columns, rows)
    if connection.dialect.name == "sqlite":
        names = ", ".join(columns)
        connection.exec_driver_sql(
            f"INSERT INTO activityhistory ({names}) VALUES (?, ?, ?, ?)", rows
        )
    else:
        connection.execute(
            insert(activityhistory), [dict(zip(columns, r, strict=True)) for r in rows]
        )
    return len(rows)


def _copy_events(connection, columns: dict[str, list], rows: list[tuple]) -> int:
    """``COPY activityhistory FROM STDIN`` as CSV; a NULL user agent is an unquoted empty
    field, an empty one a quoted empty string."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
    buffer.seek(0)
    cursor = connection.connection.cursor()
    names = ", ".join(columns)
    cursor.copy_expert(
        f"COPY activityhistory ({names}) FROM STDIN WITH (FORMAT csv, NULL '')", buffer
    )
    return len(rows)


def _agents_for(rng, spec, pool, series_of_event: np.ndarray) -> np.ndarray:
    """A user agent per event from its series' family pool, popular versions more often."""
    agents = np.full(len(series_of_event), None, dtype=object)
    families = np.array([s[2] for s in spec.series])[series_of_event]
    for family, candidates in pool.items():
        where = np.flatnonzero(families == family)
        weights = 1.0 / np.arange(1, len(candidates) + 1)
        picks = rng.choice(len(candidates), size=len(where), p=weights / weights.sum())
        agents[where] = np.array(candidates, dtype=object)[picks]
    return agents


def _holds_real_events(engine: Engine) -> bool:
    tables = set(inspect(engine).get_table_names())
    return "activityhistory" in tables and "anomaly_labels" not in tables


def _label(fault: Fault) -> dict:
    return {
        "date": fault.date,
        "kind": fault.kind,
        "channelid": fault.channelid,
        "actioncode": fault.actioncode,
        "os_family": fault.os_family,
        "factor": fault.factor,
    }
