"""The orders demo, the second monitor's shape (dimensions country and payment_method), on every
database kind: ``sql/orders_daily.sql`` returns its contract and agrees with the raw orders, the
injected faults show in the daily counts and are listed in ``order_labels``, the same seed
writes the same table, a foreign ``orders`` table is refused, and the activity demo and the
orders demo never touch each other's tables."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter

import pytest
from sqlalchemy import create_engine, func, select, text

from conftest import LAST_DAY, ROOT
from volume_monitor.db import read_query
from volume_monitor.demo import (
    DemoSpec,
    OrderFault,
    OrdersSpec,
    activityhistory,
    anomaly_labels,
    default_order_faults,
    metadata,
    order_labels,
    orders,
    orders_metadata,
    write_demo,
    write_orders_demo,
)
from volume_monitor.errors import ConfigError

QUERY = ROOT / "sql" / "orders_daily.sql"
SMALL = {"days": 60, "orders_per_day": 300}
FIRST = LAST_DAY - dt.timedelta(days=SMALL["days"] - 1)
END = LAST_DAY + dt.timedelta(days=1)
DUPLICATE_DAY = LAST_DAY - dt.timedelta(days=20)
DROP_DAY = LAST_DAY - dt.timedelta(days=45)
Row = tuple[dt.date, str, str, int]


def spec(seed: int = 5, **changes) -> OrdersSpec:
    return OrdersSpec(LAST_DAY, seed=seed, **{**SMALL, **changes})


@pytest.fixture
def engine(any_database_url):
    """An engine on a database without either demo's tables (a server's private schema is
    shared by the whole test session)."""
    engine = create_engine(any_database_url)
    orders_metadata.drop_all(engine)
    metadata.drop_all(engine)
    yield engine
    engine.dispose()


def daily(engine, start: dt.date = FIRST, end: dt.date = END) -> tuple[list[str], list[Row]]:
    """The columns and the sorted rows of ``sql/orders_daily.sql`` for ``[start, end)``."""
    with engine.connect() as connection:
        result = connection.execute(read_query(QUERY), {"start": start, "end": end})
        columns = list(result.keys())
        rows = sorted(
            (dt.date.fromisoformat(str(day)), country, method, int(count))
            for day, country, method, count in result
        )
    return columns, rows


def totals_by_day(rows: list[Row]) -> Counter:
    totals: Counter = Counter()
    for day, _, _, count in rows:
        totals[day] += count
    return totals


def row_count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar()


def test_query_returns_the_contract_and_agrees_with_the_raw_orders(engine):
    written = write_orders_demo(engine, spec())
    assert 60 * 200 < written < 60 * 500
    assert row_count(engine, orders) == written

    columns, rows = daily(engine)
    assert columns == ["date", "country", "payment_method", "count"]
    assert sum(count for *_, count in rows) == written
    assert {day for day, *_ in rows} == {FIRST + dt.timedelta(days=i) for i in range(60)}
    assert len(rows) == len({row[:3] for row in rows})  # one row per day and segment
    assert daily(engine, dt.date(2000, 1, 1), FIRST)[1] == []
    assert daily(engine, END, dt.date(2100, 1, 1))[1] == []

    # a window inside the history: the GROUP BY in the database against the raw orders
    start, end = LAST_DAY - dt.timedelta(days=9), LAST_DAY
    with engine.connect() as connection:
        raw = connection.execute(
            select(orders.c.created_at, orders.c.country, orders.c.payment_method, orders.c.status)
        ).all()
    counted = Counter(
        (stamp.date(), country, method)
        for stamp, country, method, _ in raw
        if start <= stamp.date() < end
    )
    window = daily(engine, start, end)[1]
    assert {row[:3]: row[3] for row in window} == dict(counted)
    assert sum(count for *_, count in window) == sum(counted.values())

    # every status counts; status is a column, not a dimension
    statuses = Counter(status for *_, status in raw)
    assert set(statuses) == {"paid", "refunded", "failed"}
    assert 0.85 < statuses["paid"] / written < 0.97
    assert statuses["failed"] < statuses["refunded"] < statuses["paid"]


def test_the_faults_show_in_the_daily_counts_and_are_labelled(engine):
    write_orders_demo(engine, spec(seed=8))
    rows = daily(engine)[1]
    segments = {(day, country, method) for day, country, method, _ in rows}

    # the last day: paypal in DE stalled to nothing, the other DE methods still there
    assert (LAST_DAY, "DE", "paypal") not in segments
    assert (LAST_DAY - dt.timedelta(days=1), "DE", "paypal") in segments
    assert {(LAST_DAY, "DE", m) for m in ("card", "sepa", "klarna")} <= segments

    # not every method in every country
    assert not [row for row in rows if row[1] == "GB" and row[2] == "sepa"]
    assert {m for _, c, m, _ in rows if c == "GB"} == {"card", "paypal"}
    assert {c for _, c, _, _ in rows} == {"DE", "FR", "GB", "ES", "IT", "NL"}

    # the whole-table duplicate and the drop of FR
    totals = totals_by_day(rows)
    week_before = [totals[DUPLICATE_DAY - dt.timedelta(days=i)] for i in range(1, 8)]
    assert 1.6 < totals[DUPLICATE_DAY] / statistics.median(week_before) < 2.4
    fr = totals_by_day([row for row in rows if row[1] == "FR"])
    fr_share = fr[DROP_DAY] / totals[DROP_DAY]
    usual = statistics.median(fr[DROP_DAY - dt.timedelta(days=i)] for i in range(1, 8))
    assert 0.15 < fr[DROP_DAY] / usual < 0.5
    assert fr_share < 0.12  # FR is about 22% of a usual day

    with engine.connect() as connection:
        labels = connection.execute(select(order_labels).order_by(order_labels.c.date)).all()
    assert [tuple(row) for row in labels] == [
        (DROP_DAY, "drop", "FR", None, 0.3),
        (DUPLICATE_DAY, "duplicate", None, None, 2.0),
        (LAST_DAY, "stall", "DE", "paypal", 0.0),
    ]
    assert spec().faults == default_order_faults(LAST_DAY)


def test_faults_outside_the_days_are_not_labelled(engine):
    faults = [
        OrderFault(LAST_DAY - dt.timedelta(days=3), "stall", 0.0, "IT", "card"),
        OrderFault(FIRST - dt.timedelta(days=1), "duplicate", 2.0),
        OrderFault(END, "duplicate", 2.0, country="DE"),
    ]
    write_orders_demo(engine, spec(faults=faults))
    with engine.connect() as connection:
        labels = connection.execute(select(order_labels.c.date, order_labels.c.kind)).all()
    assert [tuple(row) for row in labels] == [(LAST_DAY - dt.timedelta(days=3), "stall")]
    segments = {row[:3] for row in daily(engine)[1]}
    assert (LAST_DAY - dt.timedelta(days=3), "IT", "card") not in segments
    assert (LAST_DAY, "DE", "paypal") in segments  # no default faults when faults are given


def test_same_seed_gives_identical_counts_and_other_seeds_differ(engine):
    written = write_orders_demo(engine, spec(seed=3))
    first = daily(engine)
    assert write_orders_demo(engine, spec(seed=3)) == written
    assert daily(engine) == first
    assert row_count(engine, orders) == written

    write_orders_demo(engine, spec(seed=4))
    assert daily(engine)[1] != first[1]


def test_a_foreign_orders_table_is_refused_unless_replaced(engine):
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE orders (id INTEGER, note VARCHAR(20))"))
        connection.execute(text("INSERT INTO orders (id, note) VALUES (1, 'real'), (2, 'data')"))

    # PostgreSQL trusts 127.0.0.1 here, so a password in its URL is accepted and ignored
    url = engine.url.set(password="s3cret-pw") if engine.name == "postgresql" else engine.url
    with pytest.raises(ConfigError) as refused:
        write_orders_demo(create_engine(url), spec())
    message = str(refused.value)
    assert "\n" not in message
    assert "already has an orders table that the demo did not write" in message
    assert "--replace" in message
    assert "s3cret-pw" not in message
    with engine.connect() as connection:
        assert connection.execute(text("SELECT note FROM orders ORDER BY id")).scalars().all() == [
            "real",
            "data",
        ]

    written = write_orders_demo(engine, spec(), replace=True)
    assert row_count(engine, orders) == written
    assert row_count(engine, order_labels) == 3
    # now the demo's own: written again without replace
    assert write_orders_demo(engine, spec()) == written


def test_the_two_demos_leave_each_other_alone(engine):
    events = write_demo(engine, DemoSpec(LAST_DAY, days=20, events_per_day=300, seed=2))
    activity_labels = row_count(engine, anomaly_labels)
    assert row_count(engine, activityhistory) == events

    written = write_orders_demo(engine, spec())
    assert row_count(engine, activityhistory) == events
    assert row_count(engine, anomaly_labels) == activity_labels
    before = daily(engine)

    events = write_demo(engine, DemoSpec(LAST_DAY, days=30, events_per_day=200, seed=9))
    assert row_count(engine, activityhistory) == events
    assert row_count(engine, orders) == written
    assert row_count(engine, order_labels) == 3
    assert daily(engine) == before
