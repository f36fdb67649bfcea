"""The demo database on every database kind: deterministic, with its faults visible in the
raw events and listed in ``anomaly_labels``."""

from __future__ import annotations

import datetime as dt

import pytest
import user_agents
from sqlalchemy import create_engine, func, select, text

from conftest import LAST_DAY
from volume_monitor.demo import DemoSpec, Fault, activityhistory, anomaly_labels, write_demo

SMALL = {"days": 20, "events_per_day": 300}
FIRST = LAST_DAY - dt.timedelta(days=SMALL["days"] - 1)
DUPLICATE_DAY = LAST_DAY - dt.timedelta(days=7)
MISSING_DAY = LAST_DAY - dt.timedelta(days=3)
FAULTS = [
    Fault(DUPLICATE_DAY, "duplicate", 2.0, channelid="web"),
    Fault(MISSING_DAY, "missing_day", 0.0),
    Fault(LAST_DAY - dt.timedelta(days=40), "stall", 0.05, "mobile", os_family="Android"),
    Fault(LAST_DAY + dt.timedelta(days=1), "duplicate", 2.0, channelid="api"),
]
DAILY = text(
    "SELECT DATE(created_at) AS day, channelid, actioncode, user_agent, COUNT(*) AS n "
    "FROM activityhistory GROUP BY DATE(created_at), channelid, actioncode, user_agent"
)


def spec(seed: int, faults: list[Fault] | None = None) -> DemoSpec:
    return DemoSpec(LAST_DAY, seed=seed, faults=list(faults or FAULTS), **SMALL)


@pytest.fixture
def engine(any_database_url):
    engine = create_engine(any_database_url)
    yield engine
    engine.dispose()


def snapshot(engine) -> tuple[int, list[tuple]]:
    """The row count and the per-day/channel/action/agent aggregate, comparable across runs."""
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(activityhistory)).scalar()
        rows = connection.execute(DAILY).all()
    aggregate = sorted((str(day), ch, act, ua or "", int(n)) for day, ch, act, ua, n in rows)
    return total, aggregate


def events_between(connection, start: dt.date, end: dt.date, channel: str | None = None) -> int:
    column = activityhistory.c.created_at
    statement = select(func.count()).where(
        column >= dt.datetime.combine(start, dt.time()),
        column < dt.datetime.combine(end, dt.time()),
    )
    if channel is not None:
        statement = statement.where(activityhistory.c.channelid == channel)
    return connection.execute(statement).scalar()


def events_on(connection, day: dt.date, channel: str | None = None) -> int:
    return events_between(connection, day, day + dt.timedelta(days=1), channel)


def test_same_seed_gives_identical_tables_and_other_seeds_differ(engine):
    written = write_demo(engine, spec(seed=3))
    first = snapshot(engine)
    assert first[0] == written
    assert 20 * 150 < written < 20 * 600

    assert write_demo(engine, spec(seed=3)) == written
    assert snapshot(engine) == first

    write_demo(engine, spec(seed=4))
    other = snapshot(engine)
    assert other != first
    assert other[1] != first[1]


def test_demo_content_and_faults(engine):
    written = write_demo(engine, spec(seed=5))
    with engine.connect() as connection:
        assert events_between(connection, FIRST, LAST_DAY + dt.timedelta(days=1)) == written
        assert events_between(connection, LAST_DAY + dt.timedelta(days=1), dt.date(2100, 1, 1)) == 0
        assert events_between(connection, dt.date(2000, 1, 1), FIRST) == 0

        labels = connection.execute(
            select(
                anomaly_labels.c.date,
                anomaly_labels.c.kind,
                anomaly_labels.c.channelid,
                anomaly_labels.c.actioncode,
                anomaly_labels.c.os_family,
                anomaly_labels.c.factor,
            ).order_by(anomaly_labels.c.date)
        ).all()
        assert [tuple(row) for row in labels] == [
            (DUPLICATE_DAY, "duplicate", "web", None, None, 2.0),
            (MISSING_DAY, "missing_day", None, None, None, 0.0),
        ]

        assert events_on(connection, MISSING_DAY) == 0
        for neighbour in (MISSING_DAY - dt.timedelta(days=1), MISSING_DAY + dt.timedelta(days=1)):
            assert events_on(connection, neighbour) > 100

        neighbours = [DUPLICATE_DAY - dt.timedelta(days=7), DUPLICATE_DAY + dt.timedelta(days=7)]
        assert {d.weekday() for d in neighbours} == {DUPLICATE_DAY.weekday()}
        for channel, low, high in [("web", 1.6, 2.4), ("mobile", 0.7, 1.3)]:
            usual = sum(events_on(connection, d, channel) for d in neighbours) / 2
            ratio = events_on(connection, DUPLICATE_DAY, channel) / usual
            assert low < ratio < high, (channel, ratio)

        channels = set(connection.execute(select(activityhistory.c.channelid).distinct()).scalars())
        assert channels == {"web", "mobile", "api"}
        agents = connection.execute(select(activityhistory.c.user_agent).distinct()).scalars()
        families = {user_agents.parse(agent or "").os.family for agent in agents}
    expected = {"Windows", "Mac OS X", "iOS", "Android", "Linux", "Chrome OS", "Ubuntu", "Other"}
    assert expected <= families
    assert len(families) >= 8


def test_default_faults_outside_a_short_range_are_not_labelled(engine):
    write_demo(engine, DemoSpec(LAST_DAY, seed=6, **SMALL))
    with engine.connect() as connection:
        kinds = connection.execute(
            select(anomaly_labels.c.date, anomaly_labels.c.kind).order_by(anomaly_labels.c.date)
        ).all()
    assert [tuple(row) for row in kinds] == [
        (LAST_DAY - dt.timedelta(days=14), "stall"),
        (LAST_DAY, "duplicate"),
    ]
