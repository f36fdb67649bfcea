"""The demo databases, one per monitor shape: ``activityhistory`` (raw events with realistic
user agents; dimensions channelid, actioncode and the OS family) with its injected faults in
``anomaly_labels``, and ``orders`` (dimensions country and payment_method) with its faults in
``order_labels``. Both have weekly seasonality, a trend and noise.

Each pair of tables has its own :class:`MetaData`, so writing one demo never touches the other.
Deterministic for a seed. Rows are generated per day as arrays and inserted in batches, so a
table can grow to millions of rows quickly. Works on any SQLAlchemy URL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

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


def _rows_table(name: str, meta: MetaData, *columns: Column) -> Table:
    """A demo table of timestamped rows: ``id``, ``created_at`` (indexed), then ``columns``."""
    return Table(
        name,
        meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_at", DateTime, nullable=False),
        *columns,
        Index(f"ix_{name}_created_at", "created_at"),
    )


def _labels_table(name: str, meta: MetaData, *segment: Column) -> Table:
    """Where a demo lists its injected faults: ``date``, ``kind``, the ``segment`` columns
    (NULL: any value) and ``factor``, as :func:`dataclasses.asdict` gives a fault."""
    return Table(
        name,
        meta,
        Column("date", Date, nullable=False),
        Column("kind", String(32), nullable=False),
        *segment,
        Column("factor", Float, nullable=False),
    )


metadata = MetaData()
activityhistory = _rows_table(
    "activityhistory",
    metadata,
    Column("channelid", String(32), nullable=False),
    Column("actioncode", String(32), nullable=False),
    Column("user_agent", String(512)),
)
anomaly_labels = _labels_table(
    "anomaly_labels",
    metadata,
    Column("channelid", String(32)),
    Column("actioncode", String(32)),
    Column("os_family", String(32)),
)

orders_metadata = MetaData()  # apart: writing one demo never drops the other's tables
orders = _rows_table(
    "orders",
    orders_metadata,
    Column("country", String(8), nullable=False),
    Column("payment_method", String(16), nullable=False),
    Column("status", String(16), nullable=False),
)
order_labels = _labels_table(
    "order_labels",
    orders_metadata,
    Column("country", String(8)),
    Column("payment_method", String(16)),
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
COUNTRIES = {"DE": 0.30, "FR": 0.22, "GB": 0.18, "ES": 0.10, "IT": 0.10, "NL": 0.10}
# Not every method everywhere: GB, ES and IT have no sepa, only DE and NL have klarna.
PAYMENT_METHODS = {
    "DE": {"paypal": 0.38, "card": 0.27, "sepa": 0.20, "klarna": 0.15},
    "FR": {"card": 0.70, "paypal": 0.22, "sepa": 0.08},
    "GB": {"card": 0.78, "paypal": 0.22},
    "ES": {"card": 0.65, "paypal": 0.35},
    "IT": {"card": 0.58, "paypal": 0.42},
    "NL": {"klarna": 0.35, "card": 0.25, "sepa": 0.25, "paypal": 0.15},
}
CARD_ONLY = {"card": 1.0}  # for countries beyond the six
STATUSES = {"paid": 0.92, "refunded": 0.05, "failed": 0.03}  # a column, not a dimension
ORDERS_WEEKLY = (1.05, 0.97, 0.95, 0.96, 1.0, 0.85, 1.15)  # Monday .. Sunday: peaks Sun/Mon
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
class _Fault:
    """What every injected fault has; a subclass adds its table's dimensions, each None
    (any value) by default, in the order of its spec's series."""

    date: dt.date
    kind: str
    factor: float

    @property
    def segment(self) -> tuple[str | None, ...]:
        """The dimension values the fault is limited to (None: any)."""
        return tuple(getattr(self, f.name) for f in fields(self)[len(fields(_Fault)) :])


@dataclass(frozen=True)
class Fault(_Fault):
    """An injected fault: ``factor`` multiplies the matching series' counts on ``date``
    (2 = duplicated load, 0.05 = stall, 0 with no filters = missing day)."""

    channelid: str | None = None
    actioncode: str | None = None
    os_family: str | None = None


@dataclass(frozen=True)
class OrderFault(_Fault):
    """An injected fault of the orders demo: ``factor`` multiplies the orders of the matching
    country and payment method on ``date`` (0 = that segment missing)."""

    country: str | None = None
    payment_method: str | None = None


def default_faults(last_day: dt.date) -> list[Fault]:
    """The demo's faults: a duplicated load on the last day (so the demo alerts), a stalled
    segment, a missing day and an earlier duplicated load."""
    return [
        Fault(last_day, "duplicate", 2.0, channelid="web"),
        Fault(last_day - dt.timedelta(days=14), "stall", 0.05, "mobile", os_family="Android"),
        Fault(last_day - dt.timedelta(days=30), "missing_day", 0.0),
        Fault(last_day - dt.timedelta(days=60), "duplicate", 2.0, channelid="mobile"),
    ]


def default_order_faults(last_day: dt.date) -> list[OrderFault]:
    """The orders demo's faults: paypal in DE stalled to nothing on the last day (so the demo
    alerts), a duplicated load of the whole table and a drop of FR earlier."""
    return [
        OrderFault(last_day, "stall", 0.0, country="DE", payment_method="paypal"),
        OrderFault(last_day - dt.timedelta(days=20), "duplicate", 2.0),
        OrderFault(last_day - dt.timedelta(days=45), "drop", 0.3, country="FR"),
    ]


@dataclass
class _History:
    """What both demo specs share: ``days`` days ending with ``last_day``, and ``series``, one
    tuple per series: its dimension values, then its share of the day's rows."""

    last_day: dt.date
    days: int = 400

    @property
    def first_day(self) -> dt.date:
        return self.last_day - dt.timedelta(days=self.days - 1)

    @property
    def per_day(self) -> int:
        """Rows on an average day at the start, before weekday, trend and noise."""
        raise NotImplementedError

    def weekly_of(self, series: tuple) -> tuple[float, ...]:
        """The weekday factors of ``series``, Monday .. Sunday."""
        raise NotImplementedError


@dataclass
class DemoSpec(_History):
    """What to generate: ``days`` days ending with ``last_day``."""

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

    @property
    def per_day(self) -> int:
        return self.events_per_day

    def weekly_of(self, series: tuple) -> tuple[float, ...]:
        return WEEKLY.get(series[0], FLAT)


@dataclass
class OrdersSpec(_History):
    """The orders demo: ``days`` days ending with ``last_day``, one series per country and
    payment method; each order's ``status`` is drawn from ``statuses`` (not a dimension)."""

    orders_per_day: int = 2000
    seed: int = 7
    faults: list[OrderFault] | None = None
    countries: dict[str, float] = field(default_factory=lambda: dict(COUNTRIES))
    payment_methods: dict[str, dict[str, float]] = field(
        default_factory=lambda: {country: dict(m) for country, m in PAYMENT_METHODS.items()}
    )
    statuses: dict[str, float] = field(default_factory=lambda: dict(STATUSES))
    weekly: tuple[float, ...] = ORDERS_WEEKLY
    series: list[tuple[str, str, float]] = field(init=False)

    def __post_init__(self):
        if self.faults is None:
            self.faults = default_order_faults(self.last_day)
        self.series = [
            (country, method, c_share * m_share)
            for country, c_share in self.countries.items()
            for method, m_share in self.payment_methods.get(country, CARD_ONLY).items()
        ]

    @property
    def per_day(self) -> int:
        return self.orders_per_day

    def weekly_of(self, series: tuple) -> tuple[float, ...]:
        return self.weekly


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


def expected_counts(spec: DemoSpec | OrdersSpec, rng: np.random.Generator) -> np.ndarray:
    """Expected rows per (day, series): shares × weekday × trend × yearly wave × noise."""
    weekdays = [(spec.first_day + dt.timedelta(days=i)).weekday() for i in range(spec.days)]
    t = np.arange(spec.days) / 365.0
    trend = 1.0 + 0.15 * t + 0.05 * np.sin(2 * np.pi * (t + 0.2))
    shares = np.array([s[-1] for s in spec.series])
    weekly = np.array([spec.weekly_of(s) for s in spec.series]).T[weekdays]
    noise = rng.lognormal(0.0, 0.04, size=weekly.shape)
    return spec.per_day * trend[:, None] * shares[None, :] * weekly * noise


def apply_faults(counts: np.ndarray, spec: DemoSpec | OrdersSpec, first: dt.date) -> np.ndarray:
    """``counts`` (one row per day from ``first``, one column per series) with each of the
    spec's faults applied to its day and matching series."""
    counts = counts.copy()
    for fault in spec.faults or []:
        row = (fault.date - first).days
        if not 0 <= row < len(counts):
            continue
        match = np.array([_matches(fault, s) for s in spec.series])
        counts[row, match] = np.round(counts[row, match] * fault.factor).astype(counts.dtype)
    return counts


def _matches(fault: _Fault, series: tuple) -> bool:
    """Whether ``series`` (dimension values, then share) is one that ``fault`` hits."""
    return all(w is None or w == v for w, v in zip(fault.segment, series[:-1], strict=True))


def write_demo(engine: Engine, spec: DemoSpec, batch_days: int = 20, replace: bool = False) -> int:
    """Replace ``activityhistory`` and ``anomaly_labels`` with generated data; return the
    number of events written. An ``activityhistory`` that is not from a demo (no
    ``anomaly_labels`` beside it) is only replaced when ``replace`` is true."""
    rng = np.random.default_rng(spec.seed)
    pool = agent_pool(rng, spec.agents_per_family)

    def events(first: dt.date, counts: np.ndarray, days: range) -> dict[str, list]:
        return _events(rng, spec, pool, first, counts, days)

    return _write_history(
        engine, spec, rng, activityhistory, anomaly_labels, events, batch_days, replace
    )


def write_orders_demo(
    engine: Engine, spec: OrdersSpec, replace: bool = False, batch_days: int = 20
) -> int:
    """Replace ``orders`` and ``order_labels`` (and nothing else) with generated data; return
    the number of orders written. An ``orders`` table that is not from the demo (no
    ``order_labels`` beside it) is only replaced when ``replace`` is true."""
    rng = np.random.default_rng(spec.seed)

    def rows(first: dt.date, counts: np.ndarray, days: range) -> dict[str, list]:
        return _orders(rng, spec, first, counts, days)

    return _write_history(engine, spec, rng, orders, order_labels, rows, batch_days, replace)


def _write_history(
    engine: Engine,
    spec: DemoSpec | OrdersSpec,
    rng: np.random.Generator,
    table: Table,
    labels: Table,
    rows_of: Callable[[dt.date, np.ndarray, range], dict[str, list]],
    batch_days: int,
    replace: bool,
) -> int:
    """Drop and create the tables of ``table``'s metadata (``table`` and ``labels``), fill
    ``table`` with ``rows_of`` the generated counts, batch by batch, and list the spec's
    faults within the days in ``labels``; the number of rows written."""
    if not replace and _holds_real_rows(engine, table, labels):
        raise ConfigError(
            f"{redact_url(engine.url.render_as_string(hide_password=False))} already has an "
            f"{table.name} table that the demo did not write; pass --replace to overwrite it"
        )
    began = time.perf_counter()
    first = spec.first_day
    counts = apply_faults(rng.poisson(expected_counts(spec, rng)), spec, first)
    table.metadata.drop_all(engine)
    table.metadata.create_all(engine)
    written = 0
    with engine.begin() as connection:
        for start in range(0, spec.days, batch_days):
            days = range(start, min(start + batch_days, spec.days))
            written += insert_rows(connection, table, rows_of(first, counts, days))
        faults = [asdict(f) for f in spec.faults or [] if first <= f.date <= spec.last_day]
        if faults:
            connection.execute(insert(labels), faults)
    log.info(
        "demo: %d rows of %s over %d days (%s..%s), %d faults in %.1fs",
        written,
        table.name,
        spec.days,
        first,
        spec.last_day,
        len(faults),
        time.perf_counter() - began,
    )
    return written


def _events(rng, spec, pool, first, counts, day_rows) -> dict[str, list]:
    """The raw events of the given days, column by column."""
    created_at, series_of_event = _spread(rng, first, counts, day_rows)
    return {
        "created_at": created_at,
        **_dimensions(spec.series, series_of_event, "channelid", "actioncode"),
        "user_agent": _agents_for(rng, spec, pool, series_of_event).tolist(),
    }


def _orders(rng, spec: OrdersSpec, first, counts, day_rows) -> dict[str, list]:
    """The orders of the given days, column by column, each with a status drawn at random."""
    created_at, series_of_order = _spread(rng, first, counts, day_rows)
    statuses = np.array(list(spec.statuses), dtype=object)
    weights = np.array(list(spec.statuses.values()))
    drawn = rng.choice(len(statuses), size=len(series_of_order), p=weights / weights.sum())
    return {
        "created_at": created_at,
        **_dimensions(spec.series, series_of_order, "country", "payment_method"),
        "status": statuses[drawn].tolist(),
    }


def _spread(rng, first: dt.date, counts: np.ndarray, day_rows) -> tuple[list[str], np.ndarray]:
    """A timestamp at random within its day for each row that ``counts`` gives the days
    ``day_rows`` (rows after ``first``), and the series (column of ``counts``) of each."""
    per_day = counts[list(day_rows)]
    days = np.repeat(
        np.array([first + dt.timedelta(days=r) for r in day_rows], "datetime64[s]"),
        per_day.sum(axis=1),
    )
    series_of_row = np.concatenate([np.repeat(np.arange(counts.shape[1]), c) for c in per_day])
    return _stamps_within(rng, days), series_of_row


def _stamps_within(rng, days: np.ndarray) -> list[str]:
    """A ``YYYY-MM-DD HH:MM:SS`` timestamp at a random second of each day in ``days``."""
    stamps = days + rng.integers(0, 86_400, size=len(days)).astype("timedelta64[s]")
    return np.char.replace(np.datetime_as_string(stamps, unit="s"), "T", " ").tolist()


def _dimensions(series: list[tuple], series_of_row: np.ndarray, *names: str) -> dict[str, list]:
    """The column ``names[i]`` of each row: the i-th dimension value of its series."""
    return {
        name: np.array([s[i] for s in series], dtype=object)[series_of_row].tolist()
        for i, name in enumerate(names)
    }


def events_of_day(rng, spec: DemoSpec, pool, day: dt.date, total: int) -> dict[str, list]:
    """``total`` raw events of one day, spread over the series by their shares, column by
    column (as :func:`insert_events` takes them)."""
    shares = np.array([s[3] for s in spec.series])
    series_of_event = rng.choice(len(spec.series), size=total, p=shares / shares.sum())
    return {
        "created_at": _stamps_within(rng, np.full(total, np.datetime64(day, "s"))),
        **_dimensions(spec.series, series_of_event, "channelid", "actioncode"),
        "user_agent": _agents_for(rng, spec, pool, series_of_event).tolist(),
    }


def insert_events(connection, columns: dict[str, list]) -> int:
    """Insert events given column-wise into ``activityhistory`` (see :func:`insert_rows`)."""
    return insert_rows(connection, activityhistory, columns)


def insert_rows(connection, table: Table, columns: dict[str, list]) -> int:
    """Insert rows given column-wise into ``table``; SQLite takes plain tuples through its
    driver and PostgreSQL (psycopg2) a COPY, the fastest paths; other databases SQLAlchemy's
    batched multi-row inserts."""
    rows = list(zip(*columns.values(), strict=True))
    if not rows:
        return 0
    if connection.dialect.driver == "psycopg2":
        return _copy_rows(connection, table.name, columns, rows)
    if connection.dialect.name == "sqlite":
        names, marks = ", ".join(columns), ", ".join("?" * len(columns))
        connection.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    else:
        connection.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in rows])
    return len(rows)


def _copy_rows(connection, table_name: str, columns: dict[str, list], rows: list[tuple]) -> int:
    """``COPY <table_name> (<columns>) FROM STDIN`` as CSV; a NULL (a user agent) is an
    unquoted empty field, an empty string a quoted one."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
    buffer.seek(0)
    cursor = connection.connection.cursor()
    names = ", ".join(columns)
    cursor.copy_expert(f"COPY {table_name} ({names}) FROM STDIN WITH (FORMAT csv, NULL '')", buffer)
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


def _holds_real_rows(engine: Engine, table: Table, labels: Table) -> bool:
    """Whether ``table`` exists without the demo's ``labels`` beside it: not a demo's."""
    tables = set(inspect(engine).get_table_names())
    return table.name in tables and labels.name not in tables
