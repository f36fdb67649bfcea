"""Late data: a day read before it was fully loaded is reported late, scored again once
complete, and a nightly run waits ``settle_hours`` before it scores a day."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from conftest import LAST_DAY, ROOT, run
from volume_monitor import freshness
from volume_monitor.errors import QueryError

FRESHNESS = {"VM_FRESHNESS_QUERY": "sql/latest_event.sql"}


def summary_of(folder, day) -> dict:
    return json.loads((folder / "results" / "default" / str(day) / "summary.json").read_text())


def scores_of(folder, day) -> pd.DataFrame:
    return pd.read_csv(folder / "results" / "default" / str(day) / "scores.csv")


def test_a_day_read_at_20h_is_late_then_scored_again_once_complete(trained_workdir):
    shutil.copy(ROOT / "sql" / "latest_event.sql", trained_workdir / "sql")
    database = trained_workdir / "data" / "demo.db"
    with sqlite3.connect(database) as connection:
        after_20h = (f"{LAST_DAY} 20:00:00",)
        connection.execute(
            "CREATE TABLE later AS SELECT * FROM activityhistory WHERE created_at >= ?", after_20h
        )
        connection.execute("DELETE FROM activityhistory WHERE created_at >= ?", after_20h)
    read_early = run("deploy.py", "--date", str(LAST_DAY), cwd=trained_workdir, **FRESHNESS)
    assert read_early.returncode == 0, read_early.stderr
    summary = summary_of(trained_workdir, LAST_DAY)
    assert summary["late_data"].startswith(f"late data: the latest event is {LAST_DAY} 19:59, ")
    assert summary["late_data"].endswith("before the day ends; scored again once complete")
    assert summary["alert"] and summary["reasons"] == [summary["late_data"]]
    assert summary["anomalies"] == 0
    scores = scores_of(trained_workdir, LAST_DAY)
    assert (scores["cause"] == "late").all() and not scores["is_anomaly"].any()
    alert = (trained_workdir / "results" / "default" / str(LAST_DAY) / "email.txt").read_text()
    assert "late data: the latest event is" in alert and "stall" not in alert

    with sqlite3.connect(database) as connection:  # the rest of the day lands
        connection.execute("INSERT INTO activityhistory SELECT * FROM later")
    next_night = LAST_DAY + dt.timedelta(days=1)
    nightly = run("deploy.py", "--date", str(next_night), cwd=trained_workdir, **FRESHNESS)
    assert nightly.returncode == 0, nightly.stderr
    complete = summary_of(trained_workdir, LAST_DAY)
    assert complete["late_data"] is None and complete["alert"]
    scores = scores_of(trained_workdir, LAST_DAY)
    assert set(scores.loc[scores["is_anomaly"], "channelid"]) == {"web"}, "the duplicated load"
    assert "late" not in set(scores["cause"].dropna())
    assert summary_of(trained_workdir, next_night)["missing_day"]
    log = trained_workdir / "logs" / "volume-monitor.log"
    assert log.read_text().count(f"{LAST_DAY} was read late; scoring it again") == 1
    again = run("deploy.py", "--date", str(next_night), cwd=trained_workdir, **FRESHNESS)
    assert again.returncode == 0
    assert log.read_text().count("scoring it again") == 1, "a complete day is not scored again"


def test_a_nightly_run_scores_the_latest_day_settle_hours_past(trained_workdir):
    now = dt.datetime.now(ZoneInfo("UTC")).replace(tzinfo=None)
    expected = (now - dt.timedelta(hours=48)).date() - dt.timedelta(days=1)
    done = run("deploy.py", "--dry-run", cwd=trained_workdir, VM_SETTLE_HOURS="48")
    assert done.returncode == 0, done.stderr
    assert f"{expected}: " in done.stdout
    assert summary_of(trained_workdir, expected)["missing_day"]


@pytest.mark.parametrize(
    ("latest", "late"),
    [
        (dt.datetime(2026, 6, 30, 23, 59), False),
        (dt.datetime(2026, 6, 30, 23, 0), False),  # within the hour's tolerance
        (dt.datetime(2026, 6, 30, 22, 59), True),
        (dt.datetime(2026, 6, 30, 20, 0), True),
        (None, False),  # no events: a missing day, not a late one
    ],
)
def test_a_day_is_late_when_its_last_event_is_before_its_end_less_the_tolerance(latest, late):
    found = freshness.Freshness(dt.date(2026, 6, 30), latest, dt.timedelta(minutes=60))
    assert found.late == late
    if late and latest.hour == 20:
        assert "2026-06-30 20:00, 4 h before the day ends" in found.reason()


def test_the_freshness_value_is_read_in_the_monitors_zone():
    assert freshness.latest_time("2026-06-30 19:59:58", "UTC") == dt.datetime(
        2026, 6, 30, 19, 59, 58
    )
    aware = dt.datetime(2026, 6, 30, 18, 0, tzinfo=dt.UTC)
    assert freshness.latest_time(aware, "Europe/Berlin") == dt.datetime(2026, 6, 30, 20, 0)
    assert freshness.latest_time(None, "UTC") is None
    with pytest.raises(QueryError, match="the freshness query returned 'soon', not a time"):
        freshness.latest_time("soon", "UTC")


def test_settled_day_waits_the_hours_after_a_days_end():
    at = dt.datetime(2026, 7, 2, 6, 30)
    assert freshness.settled_day(at, 0) == dt.date(2026, 7, 1)
    assert freshness.settled_day(at, 6) == dt.date(2026, 7, 1)
    assert freshness.settled_day(at, 7) == dt.date(2026, 6, 30)


def test_a_freshness_query_that_gives_no_time_stops_the_run_in_one_line(trained_workdir):
    (trained_workdir / "sql" / "soon.sql").write_text("SELECT 'soon' WHERE :start <= :end\n")
    done = run("deploy.py", "--date", str(LAST_DAY), cwd=trained_workdir,
               VM_FRESHNESS_QUERY="sql/soon.sql")  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if "error" in line]
    assert line.endswith("the freshness query returned 'soon', not a time")
    assert not (trained_workdir / "results" / "default" / str(LAST_DAY)).exists()


def test_a_freshness_column_of_the_counts_query_tells_a_late_day_too(workdir):
    counts_sql = (ROOT / "sql" / "daily_volume.sql").read_text()
    with_latest = counts_sql.replace(
        "    COUNT(*) AS count\n", "    COUNT(*) AS count,\n    MAX(created_at) AS latest_event\n"
    )
    assert with_latest != counts_sql
    (workdir / "sql" / "fresh.sql").write_text(with_latest)
    env = {"VM_QUERY": "sql/fresh.sql", "VM_FRESHNESS_COLUMN": "latest_event"}
    end = str(LAST_DAY + dt.timedelta(days=1))
    trained = run("train.py", "--start", str(LAST_DAY - dt.timedelta(days=90)), "--end", end,
                  "--promote", cwd=workdir, **env)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    with sqlite3.connect(workdir / "data" / "demo.db") as connection:
        connection.execute("DELETE FROM activityhistory WHERE created_at >= ?",
                           (f"{LAST_DAY} 20:00:00",))  # fmt: skip
    done = run("deploy.py", "--date", str(LAST_DAY), cwd=workdir, **env)
    assert done.returncode == 0, done.stderr
    summary = summary_of(workdir, LAST_DAY)
    assert summary["late_data"].startswith(f"late data: the latest event is {LAST_DAY} 19:59, ")
    scores = scores_of(workdir, LAST_DAY)
    assert "latest_event" not in scores.columns, "the freshness column is no dimension"
    assert (scores["cause"] == "late").all()
    both = run("deploy.py", "--date", str(LAST_DAY), cwd=workdir,
               VM_FRESHNESS_QUERY="sql/latest_event.sql", **env)  # fmt: skip
    assert both.returncode == 1
    assert "VM_FRESHNESS_QUERY and VM_FRESHNESS_COLUMN are both set: give one" in both.stderr


def test_a_freshness_column_the_query_does_not_return_is_one_error(demo_sqlite):
    from volume_monitor import db

    engine = db.make_engine(f"sqlite:///{demo_sqlite}")
    query = db.read_query(ROOT / "sql" / "daily_volume.sql")
    try:
        with pytest.raises(QueryError) as raised:
            db.fetch(engine, query, LAST_DAY, LAST_DAY + dt.timedelta(days=1), None,
                     db.Latest("latest_event"))  # fmt: skip
    finally:
        engine.dispose()
    assert str(raised.value) == (
        "the query result has no freshness column 'latest_event'; it returned date, channelid, "
        "actioncode, user_agent, count"
    )
