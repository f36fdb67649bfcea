"""The state store on real SQLite files and a private PostgreSQL schema per test: schema
migrations (fresh, from the previous revision, refusing a newer one), daily counts (a re-score
replaces the day, a seed never overwrites what was scored, exact labels), scored days, the
outbox, silences, feedback, clear one-line errors, and two processes writing at once."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Date, bindparam, create_engine, inspect, text

from conftest import ROOT, clean_environment, postgresql_schema
from volume_monitor.errors import StateError
from volume_monitor.state import (
    HEAD,
    DayRecord,
    Delivery,
    Feedback,
    Silence,
    Store,
    migrate,
    open_store,
    series_key,
)
from volume_monitor.state.connect import make_engine
from volume_monitor.state.schema import VERSION_TABLE, metadata

DIMS = ["channelid", "actioncode", "os_family"]
D1, D2, D3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
TABLES = {"series", "daily_counts", "scored_days", "deliveries", "feedback", "silences"}


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request, tmp_path) -> Iterator[str]:
    """The URL of an empty store: a SQLite file in a folder that does not exist yet, or a
    PostgreSQL schema of its own (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'volume-monitor.db'}"
        return
    with postgresql_schema("vm_state") as url:
        yield url


@pytest.fixture
def store(state_url) -> Iterator[Store]:
    with open_store(state_url) as opened:
        yield opened


def counts_frame(rows: list[tuple], **extra: list) -> pd.DataFrame:
    """A frame of (date, channelid, actioncode, os_family, count) rows, plus ``extra``."""
    frame = pd.DataFrame(rows, columns=["date", *DIMS, "count"])
    frame["date"] = pd.to_datetime(frame["date"])
    for name, values in extra.items():
        frame[name] = values
    return frame


def as_rows(frame: pd.DataFrame, *columns: str) -> set[tuple]:
    """The frame's rows as (date, labels..., columns...) tuples: dates as datetime.date, any
    missing value (NaN, NA, None) as None."""
    names = [name for name in frame.columns if name in DIMS] + list(columns)
    return {
        (row.date.date(), *(_none_if_missing(getattr(row, name)) for name in names))
        for row in frame.itertuples(index=False)
    }


def _none_if_missing(value):
    return None if pd.isna(value) else value


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def run_sql(url: str, statement: str, **params) -> list[tuple]:
    engine = create_engine(url)
    query = text(statement)
    if isinstance(params.get("date"), dt.date):
        query = query.bindparams(bindparam("date", type_=Date))
    try:
        with engine.begin() as connection:
            result = connection.execute(query, params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


# --- the schema ------------------------------------------------------------------------


def test_a_fresh_store_is_created_at_head_once(state_url, caplog):
    with caplog.at_level("INFO", logger="volume_monitor.state"), open_store(state_url) as store:
        assert store.revision() == HEAD == "0003"
    upgraded = [r.getMessage() for r in caplog.records if "upgraded" in r.getMessage()]
    assert upgraded == [f"state: store {state_url} upgraded from an empty store to 0003"]
    assert table_names(state_url) == TABLES | {VERSION_TABLE}

    caplog.clear()
    with caplog.at_level("INFO", logger="volume_monitor.state"), open_store(state_url) as store:
        assert store.revision() == HEAD
    assert not [r for r in caplog.records if "upgraded" in r.getMessage()]


def test_the_tables_of_the_queries_are_those_the_migrations_build(store, state_url):
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(migrate.MIGRATIONS))
    assert scripts.get_current_head() == HEAD
    walked = [script.revision for script in scripts.walk_revisions()]
    assert tuple(reversed(walked)) == migrate.REVISIONS
    engine = create_engine(state_url)
    try:
        inspector = inspect(engine)
        for table in metadata.sorted_tables:
            built = [column["name"] for column in inspector.get_columns(table.name)]
            assert built == [column.name for column in table.columns], table.name
    finally:
        engine.dispose()


def test_a_store_of_the_previous_schema_is_upgraded_and_keeps_its_rows(state_url, caplog):
    engine = make_engine(state_url)
    migrate.upgrade(engine, state_url, target="0001")
    engine.dispose()
    assert table_names(state_url) == {"series", "daily_counts", "scored_days", VERSION_TABLE}
    key = series_key({"channelid": "web", "actioncode": "view", "os_family": "Windows"})
    run_sql(state_url, "INSERT INTO series (monitor, key) VALUES ('default', :key)", key=key)
    [(series_id,)] = run_sql(state_url, "SELECT id FROM series WHERE key = :key", key=key)
    run_sql(
        state_url,
        "INSERT INTO daily_counts (series_id, date, count, expected_low, expected_high, score,"
        " is_anomaly, direction, cause, source)"
        " VALUES (:id, :date, 42, 30.5, 50.5, -0.25, :yes, 'high', 'spike', 'scored')",
        id=series_id, date=D1, yes=True,
    )  # fmt: skip
    run_sql(
        state_url,
        "INSERT INTO scored_days (monitor, date, scored_at, kind, model_uri, model_version,"
        " run_id, rows, anomalies, alert, missing_day, summary) VALUES ('default', :date,"
        " '2026-03-02T03:00:00+00:00', 'nightly', 'models:/vm@production', '3', 'abc', 1, 1,"
        " :yes, :no, :summary)",
        date=D1, yes=True, no=False, summary=json.dumps({"date": "2026-03-01", "anomalies": 1}),
    )  # fmt: skip

    with caplog.at_level("INFO", logger="volume_monitor.state"), open_store(state_url) as store:
        assert store.revision() == HEAD
        history = store.history("default", D1, D1)
        assert as_rows(history, "count", "expected_low", "score", "is_anomaly", "source") == {
            (D1, "web", "view", "Windows", 42, 30.5, -0.25, True, "scored")
        }
        day = store.day("default", D1)
        assert (day.kind, day.model_version, day.alert, day.missing_day) == (
            "nightly", "3", True, False,
        )  # fmt: skip
        assert day.summary == {"date": "2026-03-01", "anomalies": 1}
        # the new tables work, and new series get ids after the old ones
        sent = store.record_delivery(Delivery("default", D1, "email", "alert", "sent"))
        assert store.delivery("default", D1, "email", "alert") == sent
        new = counts_frame([(D2, "web", "view", "Linux", 7)])
        assert store.write_counts("default", DIMS, new, "scored") == 1
        assert len(store.history("default", D1, D2)) == 2
    assert f"state: store {state_url} upgraded from 0001 to {HEAD}" in caplog.text


def test_feedback_given_before_matchers_is_kept_as_about_every_series(state_url):
    engine = make_engine(state_url)
    migrate.upgrade(engine, state_url, target="0002")
    engine.dispose()
    run_sql(
        state_url,
        "INSERT INTO feedback (monitor, date, series_key, verdict, note, created_at)"
        " VALUES ('m', :date, NULL, 'incident', 'dup', '2026-03-02T03:00:00+00:00')",
        date=D1,
    )
    with open_store(state_url) as store:
        [kept] = store.feedback("m", D1, D1)
    assert (kept.verdict, kept.matchers, kept.note) == ("incident", {}, "dup")


def test_a_store_written_by_a_newer_version_is_refused_and_left_alone(state_url):
    with open_store(state_url) as store:
        store.write_counts("m", DIMS, counts_frame([(D1, "web", "view", "Windows", 5)]), "train")
    run_sql(state_url, f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    tables = table_names(state_url)

    with pytest.raises(StateError) as raised:
        open_store(state_url)

    assert str(raised.value) == (
        f"the state store {state_url} was written by a newer volume-monitor "
        "(schema revision 0099); upgrade volume-monitor to use it"
    )
    assert table_names(state_url) == tables
    assert run_sql(state_url, f"SELECT version_num FROM {VERSION_TABLE}") == [("0099",)]
    assert run_sql(state_url, "SELECT count FROM daily_counts") == [(5,)]


# --- failures --------------------------------------------------------------------------


def test_an_unreachable_server_is_one_line_without_the_password():
    url = "postgresql+psycopg2://vm:s3cret@127.0.0.1:1/test"
    with pytest.raises(StateError) as raised:
        open_store(url)
    message = str(raised.value)
    assert message.startswith(
        "cannot use the state store postgresql+psycopg2://vm:***@127.0.0.1:1/test: "
    )
    assert "s3cret" not in message
    assert "\n" not in message
    assert raised.value.exit_code == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("not a url", "Could not parse SQLAlchemy URL"),
        ("mysql+pymysql://root:pw@127.0.0.1/test", "must be SQLite or PostgreSQL, not mysql"),
        ("nosuchdb://x", "must be SQLite or PostgreSQL, not nosuchdb"),
    ],
)
def test_a_bad_url_is_one_line(url, reason):
    with pytest.raises(StateError) as raised:
        open_store(url)
    message = str(raised.value)
    assert message.startswith("cannot use the state store ")
    assert reason in message
    assert "\n" not in message
    assert ":pw@" not in message


def test_a_database_failure_inside_a_method_is_a_state_error(store, state_url):
    run_sql(state_url, "DROP TABLE feedback")
    with pytest.raises(StateError) as raised:
        store.feedback("m", D1, D3)
    message = str(raised.value)
    assert message.startswith(f"cannot use the state store {state_url}: ")
    assert "feedback" in message
    assert "\n" not in message


# --- daily counts ----------------------------------------------------------------------


def test_a_scored_write_replaces_the_whole_day(store):
    first = counts_frame(
        [
            (D1, "web", "view", "Windows", 10),
            (D1, "web", "view", "Linux", 20),
            (D2, "web", "view", "Windows", 11),
            (D2, "web", "view", "Linux", 21),
        ],
        score=[0.1, 0.2, 0.3, 0.4],
    )
    assert store.write_counts("m", DIMS, first, "scored") == 4
    rescored = counts_frame(
        [(D2, "web", "view", "Windows", 99)],
        expected_low=[5.0], expected_high=[15.0], score=[-0.5], is_anomaly=[True],
        direction=["high"], cause=["duplicate"],
    )  # fmt: skip
    assert store.write_counts("m", DIMS, rescored, "scored") == 1

    history = store.history("m", D1, D2)
    assert list(history.columns) == [
        "date", *DIMS, "count", "expected_low", "expected_high", "score", "is_anomaly",
        "direction", "cause", "source",
    ]  # fmt: skip
    assert as_rows(history, "count", "source") == {
        (D1, "web", "view", "Windows", 10, "scored"),
        (D1, "web", "view", "Linux", 20, "scored"),
        (D2, "web", "view", "Windows", 99, "scored"),  # Linux is gone on D2
    }
    replaced = history[history["date"] == pd.Timestamp(D2)].iloc[0]
    assert (replaced.expected_low, replaced.expected_high, replaced.score) == (5.0, 15.0, -0.5)
    assert (replaced.is_anomaly, replaced.direction, replaced.cause) == (True, "high", "duplicate")
    kept = history[history["date"] == pd.Timestamp(D1)]
    assert kept["expected_low"].isna().all() and kept["is_anomaly"].isna().all()
    assert kept["direction"].isna().all()


def test_a_training_seed_never_overwrites_what_was_scored(store):
    seed = counts_frame(
        [
            (D1, "web", "view", "Windows", 10),
            (D1, "web", "view", "Linux", 20),
            (D2, "web", "view", "Windows", 11),
            (D2, "web", "view", "Linux", 21),
        ]
    )
    assert store.write_counts("m", DIMS, seed, "train") == 4
    scored = counts_frame([(D2, "web", "view", "Windows", 500)], is_anomaly=[True])
    store.write_counts("m", DIMS, scored, "scored")
    reseed = counts_frame(
        [
            (D1, "web", "view", "Windows", 1),
            (D1, "web", "view", "Linux", 2),
            (D2, "web", "view", "Windows", 3),  # scored: stays 500
            (D2, "web", "view", "Linux", 4),  # deleted by the re-score: seeded again
            (D2, "api", "search", "Mac OS X", 5),  # a new series
        ],
        expected_low=[0.5, np.nan, 2.5, 3.5, 4.5],
    )
    assert store.write_counts("m", DIMS, reseed, "train") == 4

    history = store.history("m", D1, D2)
    assert as_rows(history, "count", "expected_low", "is_anomaly", "source") == {
        (D1, "web", "view", "Windows", 1, 0.5, None, "train"),
        (D1, "web", "view", "Linux", 2, None, None, "train"),
        (D2, "web", "view", "Windows", 500, None, True, "scored"),
        (D2, "web", "view", "Linux", 4, 3.5, None, "train"),
        (D2, "api", "search", "Mac OS X", 5, 4.5, None, "train"),
    }


def test_large_writes_count_every_row_and_keep_every_value(store):
    """More rows than one page of a driver's batch: the counts returned are exact."""
    segments = [f"segment {i:04d}" for i in range(1500)]
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime([D1] * 1500 + [D2] * 1500),
            "segment": segments * 2,
            "count": range(3000),
            "expected_high": [i / 3 for i in range(3000)],
            "cause": ["tab\there, back\\slash\nnew line", None] * 1500,
        }
    )
    assert store.write_counts("big", ["segment"], frame, "train") == 3000
    second_day = frame[frame["date"] == pd.Timestamp(D2)]
    assert store.write_counts("big", ["segment"], second_day, "scored") == 1500
    assert store.write_counts("big", ["segment"], frame, "train") == 1500  # D2 is scored

    history = store.history("big", D1, D2)
    assert len(history) == 3000
    assert history["count"].sum() == sum(range(3000))
    assert history["expected_high"].tolist() == [i / 3 for i in range(3000)]
    assert history["cause"].tolist() == ["tab\there, back\\slash\nnew line", None] * 1500
    assert history.groupby("date")["source"].first().tolist() == ["train", "scored"]


def test_history_keeps_the_matching_series_in_date_then_label_order(store):
    store.write_counts(
        "m",
        DIMS,
        counts_frame(
            [
                (D2, "web", "view", "Windows", 4),
                (D1, "web", "view", "Windows", 1),
                (D1, "api", "view", "Windows", 2),
                (D1, "web", "search", "Linux", 3),
                (D3, "web", "view", "Windows", 5),
            ]
        ),
        "train",
    )
    everything = store.history("m", D1, D2)  # D3 is outside
    assert [(r.date.date(), r.channelid, r.actioncode) for r in everything.itertuples()] == [
        (D1, "api", "view"),
        (D1, "web", "search"),
        (D1, "web", "view"),
        (D2, "web", "view"),
    ]
    assert everything["date"].dtype == "datetime64[ns]"
    web = store.history("m", D1, D3, match={"channelid": "web"})
    assert list(web["count"]) == [3, 1, 4, 5]
    one = store.history("m", D1, D3, match={"channelid": "web", "actioncode": "view"})
    assert list(one["count"]) == [1, 4, 5]
    assert store.history("m", D1, D3, match={"channelid": "nothing"}).empty

    with pytest.raises(StateError) as raised:
        store.history("m", D1, D3, match={"channelid": "web", "foo": "x"})
    assert str(raised.value) == (
        "monitor 'm' has no dimension 'foo' (dimensions: channelid, actioncode, os_family)"
    )


def test_a_monitor_without_series_has_an_empty_history(store):
    for match in (None, {"foo": "bar"}):
        history = store.history("unknown", D1, D3, match=match)
        assert history.empty
        assert {"date", "count", "expected_low", "score", "source"} <= set(history.columns)
    assert store.daily_totals("unknown", D1, D3).empty
    assert store.dimensions("unknown") == []


LABELS = [
    "NA",
    "N/A",
    "null",
    "None",
    "",
    " web ",
    'say "hi"',
    "it's",
    "back\\slash",
    "<script>alert(1)</script>",
    "Ünïcødé 日本語 🚀",
    '{"channelid":"web"}',
    "a,b:c",
    "line\nbreak",
]


def test_labels_round_trip_exactly(store, state_url):
    rows = [(D1, label, "view", f"os-{i}", i) for i, label in enumerate(LABELS)]
    assert store.write_counts("m", DIMS, counts_frame(rows), "train") == len(LABELS)

    history = store.history("m", D1, D1)
    assert sorted(history["channelid"]) == sorted(LABELS)
    assert as_rows(history, "count") == set(rows)
    for i, label in enumerate(LABELS):
        matched = store.history("m", D1, D1, match={"channelid": label})
        assert list(matched["count"]) == [i], label
    keys = {key for (key,) in run_sql(state_url, "SELECT key FROM series")}
    assert series_key({"channelid": "NA", "actioncode": "view", "os_family": "os-0"}) in keys
    assert '{"channelid":"Ünïcødé 日本語 🚀","actioncode":"view","os_family":"os-10"}' in keys
    assert store.dimensions("m") == DIMS


def test_daily_totals_sum_the_volume_per_day(store):
    frame = counts_frame(
        [
            (D1, "web", "view", "Windows", 10),
            (D1, "web", "view", "Linux", 20),
            (D1, "api", "view", "Linux", 30),
            (D2, "web", "view", "Windows", 11),
            (D2, "api", "view", "Linux", 31),
        ],
        expected_low=[8.0, 15.0, 25.0, None, None],
        expected_high=[12.0, 25.0, 35.0, 14.0, None],
    )
    store.write_counts("m", DIMS, frame, "scored")

    totals = store.daily_totals("m", D1, D3)
    assert list(totals.columns) == ["date", "count", "expected_low", "expected_high"]
    assert list(totals["date"]) == [pd.Timestamp(D1), pd.Timestamp(D2)]
    assert list(totals["count"]) == [60, 42]
    assert totals["expected_low"].iloc[0] == 48.0 and pd.isna(totals["expected_low"].iloc[1])
    assert list(totals["expected_high"]) == [72.0, 14.0]

    web = store.daily_totals("m", D1, D3, match={"channelid": "web"})
    assert list(web["count"]) == [30, 11]
    assert web["expected_low"].iloc[0] == 23.0 and pd.isna(web["expected_low"].iloc[1])
    assert list(web["expected_high"]) == [37.0, 14.0]


def test_frames_that_break_the_contract_are_refused(store):
    frame = counts_frame([(D1, "web", "view", "Windows", 1)])
    with pytest.raises(ValueError, match="more than one row for a series on a day"):
        store.write_counts("m", DIMS, pd.concat([frame, frame]), "scored")
    with pytest.raises(ValueError, match="no column os_family"):
        store.write_counts("m", DIMS, frame.drop(columns="os_family"), "scored")
    with pytest.raises(ValueError, match="source must be one of train, scored"):
        store.write_counts("m", DIMS, frame, "guess")
    assert store.write_counts("m", DIMS, frame.iloc[:0], "scored") == 0
    assert store.monitors() == []


# --- scored days -----------------------------------------------------------------------


def day_record(date: dt.date, monitor: str = "m", **changes) -> DayRecord:
    values = {
        "monitor": monitor,
        "date": date,
        "scored_at": "2026-03-02T03:00:05+00:00",
        "kind": "nightly",
        "model_uri": "models:/volume-monitor@production",
        "model_version": "3",
        "run_id": "0123456789abcdef",
        "rows": 64,
        "anomalies": 2,
        "alert": True,
        "missing_day": False,
        "summary": {"date": str(date), "reasons": ["2 anomalous series"], "groups": {"web": 2}},
    }
    values.update(changes)
    return DayRecord(**values)


def test_scored_days_round_trip_and_a_rescore_replaces_the_record(store):
    store.record_day(day_record(D1, summary={"note": "Ünïcødé", "share": 0.03, "n": None}))
    store.record_day(day_record(D2))
    rescored = day_record(D1, kind="backfill", anomalies=np.int64(0), alert=np.bool_(False))
    store.record_day(rescored)
    store.record_day(day_record(D1, monitor="other", missing_day=True))

    assert store.day("m", D1) == day_record(D1, kind="backfill", anomalies=0, alert=False)
    assert store.day("m", D3) is None
    assert store.days("m", D1, D3) == [store.day("m", D1), day_record(D2)]
    assert store.days("m", D2, D2) == [day_record(D2)]
    assert store.day("other", D1).missing_day is True
    assert store.last_day("m", D3) == day_record(D2) and store.last_day("m", D1).date == D1
    assert store.last_day("m", D1 - dt.timedelta(days=1)) is None
    assert store.last_day("third", D3) is None
    store.write_counts("third", DIMS, counts_frame([(D1, "web", "view", "Windows", 1)]), "train")
    assert store.monitors() == ["m", "other", "third"]


# --- the outbox, silences, feedback ----------------------------------------------------


def test_deliveries_are_upserted_by_their_key_and_retried_until_sent(store):
    pending = store.record_delivery(
        Delivery("m", D1, "email", "alert", "pending", payload='{"subject": "x"}',
                 model_version="3", created_at="2026-03-02T03:00:00+00:00")
    )  # fmt: skip
    failed = store.record_delivery(
        Delivery("m", D1, "email", "alert", "failed", attempts=1, last_error="SMTP 451",
                 payload='{"subject": "x"}', model_version="3")
    )  # fmt: skip
    assert failed.created_at == pending.created_at == "2026-03-02T03:00:00+00:00"
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 1, "SMTP 451")
    assert store.delivery("m", D1, "email", "alert") == failed
    assert store.delivery("m", D1, "slack", "alert") is None
    store.record_delivery(Delivery("m", D1, "slack", "alert", "sent", sent_at="2026-03-02T03:01"))
    store.record_delivery(Delivery("m", D1, "email", "resolved", "pending"))
    store.record_delivery(Delivery("other", D2, "email", "alert", "pending"))
    store.record_delivery(Delivery("m", D3, "email", "alert", "failed"))  # not before until

    waiting = store.undelivered("email", D1, D3)
    assert [(d.monitor, d.date, d.kind, d.status) for d in waiting] == [
        ("m", D1, "alert", "failed"),
        ("m", D1, "resolved", "pending"),
        ("other", D2, "alert", "pending"),
    ]
    assert store.undelivered("slack", D1, D3) == []
    assert store.undelivered("email", D2, D3) == [store.delivery("other", D2, "email", "alert")]

    sent = store.record_delivery(
        Delivery("m", D1, "email", "alert", "sent", attempts=2, sent_at="2026-03-03T03:00:00")
    )
    assert sent.last_error is None and sent.payload is None
    assert [d.kind for d in store.undelivered("email", D1, D2)] == ["resolved"]


def test_silences_are_listed_active_and_expired(store):
    web = store.add_silence(
        Silence("m", {"channelid": "web", "os_family": "Ünïcødé"}, D2, "migration", "ana")
    )
    whole = store.add_silence(Silence("m", {}, D3, "holiday"))
    other = store.add_silence(Silence("other", {"channelid": "api"}, D1, "known"))
    assert web < whole < other

    listed = store.silences("m")
    assert [(s.id, s.matchers, s.until, s.reason, s.created_by) for s in listed] == [
        (web, {"channelid": "web", "os_family": "Ünïcødé"}, D2, "migration", "ana"),
        (whole, {}, D3, "holiday", None),
    ]
    assert [s.id for s in store.silences()] == [web, whole, other]
    assert [s.id for s in store.silences("m", active_on=D2)] == [web, whole]
    assert [s.id for s in store.silences("m", active_on=D3)] == [whole]
    assert [s.id for s in store.silences(active_on=D1)] == [web, whole, other]

    assert store.expire_silence(web) is True
    assert store.expire_silence(web) is False
    assert store.expire_silence(9999) is False
    assert [s.id for s in store.silences("m", active_on=D1)] == [whole]
    expired = store.silences("m")[0]
    assert expired.expired_at is not None and not expired.active_on(D1)


def test_feedback_is_kept_and_listed_by_day(store):
    web = {"channelid": "web", "os_family": "Windows"}
    first = store.add_feedback(Feedback("m", D2, "incident", web, "dup load", "ana"))
    second = store.add_feedback(Feedback("m", D1, "normal"))
    third = store.add_feedback(Feedback("m", D2, "new-level", note="Ünïcødé"))
    other = store.add_feedback(Feedback("other", D2, "expected"))
    fourth = store.add_feedback(Feedback("m", D3, "expected"))

    listed = store.feedback("m", D1, D2)
    assert [(f.id, f.date, f.verdict, f.matchers, f.note, f.author) for f in listed] == [
        (second, D1, "normal", {}, None, None),
        (first, D2, "incident", web, "dup load", "ana"),
        (third, D2, "new-level", {}, "Ünïcødé", None),
    ]
    assert [f.id for f in store.all_feedback("m")] == [second, first, third, fourth]
    assert [f.id for f in store.all_feedback()] == [second, first, third, fourth, other]
    with pytest.raises(ValueError, match="verdict must be one of"):
        Feedback("m", D1, "meh")


# --- two processes at once -------------------------------------------------------------

WRITER = """
import datetime as dt, sys, time
import pandas as pd
from volume_monitor.state import DayRecord, open_store

url, monitor, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start_at - time.time()))  # both open the fresh store at the same moment
segments = [f"s{i}" for i in range(500)]
with open_store(url) as store:
    for n in range(30):
        day = dt.date(2026, 1, 1) + dt.timedelta(days=n)
        frame = pd.DataFrame({"date": day, "segment": segments, "count": range(n, n + 500)})
        store.write_counts(monitor, ["segment"], frame, "scored")
        store.record_day(DayRecord(monitor, day, "2026-01-31T03:00:00+00:00", "backfill",
                                   "models:/vm/1", "1", "run", 500, 0, False, False, {"n": n}))
"""


def start_writer(url: str, monitor: str, start_at: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, monitor, start_at],
        cwd=ROOT,
        env=clean_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_writing_one_store_at_once_lose_nothing(state_url):
    start_at = f"{time.time() + 4:.3f}"  # after both have imported pandas
    writers = [start_writer(state_url, monitor, start_at) for monitor in ("backfill", "nightly")]
    for writer in writers:
        _, stderr = writer.communicate(timeout=240)
        assert writer.returncode == 0, stderr

    last = dt.date(2026, 1, 30)
    with open_store(state_url) as store:
        assert store.revision() == HEAD
        for monitor in ("backfill", "nightly"):
            history = store.history(monitor, dt.date(2026, 1, 1), last)
            assert len(history) == 30 * 500
            assert history.groupby("date")["count"].sum().tolist() == [
                sum(range(n, n + 500)) for n in range(30)
            ]
            days = store.days(monitor, dt.date(2026, 1, 1), last)
            assert [day.summary["n"] for day in days] == list(range(30))
    [(versions,)] = run_sql(state_url, f"SELECT COUNT(*) FROM {VERSION_TABLE}")
    assert versions == 1
