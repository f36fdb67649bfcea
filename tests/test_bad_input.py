"""Bad input, as a nightly cron run meets it: each case is a one-line error with exit 1, or a
documented treatment that the log states, never a traceback; the results of a day scored
earlier are kept byte for byte. User agents of every odd kind are property-tested over the ETL.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from conftest import (
    FIRST_DAY,
    LAST_DAY,
    MISSING_DAY,
    error_lines,
    log_of,
    results_of,
    run,
    server_url,
)  # fmt: skip
from volume_monitor import agents, db, etl
from volume_monitor.errors import QueryError

SECRET = "Pw-9f3-secret"
SELECT_DAY = "SELECT DATE(created_at) AS date, channelid, actioncode, user_agent"
WHERE_DAY = "FROM activityhistory WHERE created_at >= :start AND created_at < :end"
GROUP_DAY = "GROUP BY DATE(created_at), channelid, actioncode, user_agent"


def counted_as(count: str) -> str:
    """The day's contract query with ``count`` as its count expression."""
    return f"{SELECT_DAY}, {count} AS count {WHERE_DAY} {GROUP_DAY}"


def query_file(install: Path, sql: str) -> str:
    path = install / "sql" / "case.sql"
    path.write_text(sql + "\n")
    return "sql/case.sql"


@dataclass
class Case:
    """A bad input: the environment (a ``{sql}`` value becomes a query file), the deploy
    arguments, and what the one error line must say."""

    env: dict[str, str]
    says: str
    args: list[str] = field(default_factory=lambda: ["--date", str(LAST_DAY)])
    sql: str | None = None


TOMORROW = (dt.date.today() + dt.timedelta(days=2)).isoformat()
ERRORS = {
    "database URL malformed": Case(
        {"VM_DATABASE_URL": f"postgres//monitor:{SECRET}@db"}, "VM_DATABASE_URL is not a valid"
    ),
    "database dialect unknown": Case(
        {"VM_DATABASE_URL": f"nosuchdb://monitor:{SECRET}@db/events"}, "unknown database dialect"
    ),
    "database unreachable": Case(
        {"VM_DATABASE_URL": f"postgresql+psycopg2://monitor:{SECRET}@127.0.0.1:1/events"},
        "cannot reach the database postgresql+psycopg2://monitor:***@127.0.0.1:1/events",
    ),
    "SQLite file missing": Case(
        {"VM_DATABASE_URL": "sqlite:///data/absent.db"}, "the file does not exist"
    ),
    "query file missing": Case({"VM_QUERY": "sql/absent.sql"}, "cannot read the query file"),
    "query without binds": Case(
        {}, ":start", sql=f"{SELECT_DAY}, COUNT(*) AS count FROM activityhistory {GROUP_DAY}"
    ),
    "query missing columns": Case(
        {},
        "missing the column(s) actioncode, user_agent (or os_family)",
        sql="SELECT DATE(created_at) AS date, channelid, COUNT(*) AS count "
        f"{WHERE_DAY} GROUP BY DATE(created_at), channelid",
    ),
    "query count not a number": Case({}, "column count has", sql=counted_as("'many'")),
    "query date not a date": Case(
        {},
        "column date has",
        sql="SELECT 'someday' AS date, channelid, actioncode, user_agent, COUNT(*) AS count "
        f"{WHERE_DAY} GROUP BY channelid, actioncode, user_agent",
    ),
    "query NULL counts": Case({}, "NULL or non-numeric", sql=counted_as("NULL")),
    "query negative counts": Case({}, "negative value(s)", sql=counted_as("-COUNT(*)")),
    "query on a missing table": Case(
        {},
        "the query failed",
        sql=f"{SELECT_DAY}, COUNT(*) AS count FROM no_such_table "
        "WHERE created_at >= :start AND created_at < :end "
        f"{GROUP_DAY}",
    ),
    "day not over yet": Case({}, "is not over yet", args=["--date", TOMORROW]),
    "query changed since training": Case(
        {},
        "cannot score the monitor 'default': it was trained on another query",
        sql=f"{SELECT_DAY}, COUNT(*) AS count {WHERE_DAY} AND channelid <> 'api' {GROUP_DAY}",
    ),
    "query with other dimensions than the model's": Case(
        {"VM_MONITORS": "monitors.yml"},
        "it was trained on the dimensions channelid, actioncode, os_family, and the query now "
        "returns channelid, os_family",
        sql="SELECT DATE(created_at) AS date, channelid, user_agent, COUNT(*) AS count "
        f"{WHERE_DAY} GROUP BY DATE(created_at), channelid, user_agent",
    ),
}
# A monitors file whose one monitor, named default, takes every column as a dimension.
FREE_DIMENSIONS = """\
monitors:
  default:
    database_url: sqlite:///data/demo.db
    query: sql/case.sql
    model_name: volume-monitor
"""


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_input_is_one_line_exit_1_and_keeps_the_results(install, name):
    case = ERRORS[name]
    before = results_of(install)
    env = dict(case.env)
    if case.sql:
        env["VM_QUERY"] = query_file(install, case.sql)
    if "VM_MONITORS" in env:
        (install / env["VM_MONITORS"]).write_text(FREE_DIMENSIONS)
    result = run("deploy.py", *case.args, cwd=install, **env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + log_of(install)
    [line] = error_lines(result.stderr)
    assert case.says in line
    assert SECRET not in result.stderr + result.stdout + log_of(install)
    assert results_of(install) == before, "an earlier day's results were changed"
    assert not (install / "data" / "absent.db").exists()


def test_wrong_credentials_are_one_line_without_the_password(install):
    """MariaDB refuses the login (the machine's PostgreSQL trusts every local login)."""
    refused = make_url(server_url("mariadb")).set(username="volume_monitor_nobody", password=SECRET)
    before = results_of(install)
    result = run(
        "deploy.py", "--date", str(LAST_DAY), cwd=install,
        VM_DATABASE_URL=refused.render_as_string(hide_password=False),
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "cannot reach the database mysql+pymysql://volume_monitor_nobody:***@" in line
    assert "Access denied" in line
    assert SECRET not in result.stderr + log_of(install)
    assert results_of(install) == before


@pytest.mark.parametrize(
    "command",
    [("deploy.py", "--date", str(LAST_DAY)), ("train.py",),
     ("volume_monitor/cli.py", "doctor", "--no-smtp-login")],
    ids=["deploy", "train", "doctor"],
)  # fmt: skip
def test_a_query_file_that_writes_is_refused_by_every_command(install, command):
    sql = f"{counted_as('COUNT(*)')}; DELETE FROM activityhistory; SELECT 1"
    env = {"VM_QUERY": query_file(install, sql)}
    before = results_of(install)
    with sqlite3.connect(install / "data" / "demo.db") as connection:
        rows = connection.execute("SELECT COUNT(*) FROM activityhistory").fetchone()[0]
    result = run(*command, cwd=install, **env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    said = "the query case.sql must hold exactly one statement, a SELECT; it holds 3"
    assert said in (error_lines(result.stderr) or [result.stdout])[0] or said in result.stdout
    with sqlite3.connect(install / "data" / "demo.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM activityhistory").fetchone()[0] == rows
    assert results_of(install) == before


# --- documented treatments: scored, and the log says what was done -------------------------


def test_a_day_with_more_series_than_the_ceiling_is_refused_in_one_line(install):
    before = results_of(install)
    day = str(LAST_DAY - dt.timedelta(days=1))
    result = run("deploy.py", "--date", day, cwd=install, VM_MAX_SERIES="50")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result.stderr)
    assert line.endswith("more than VM_MAX_SERIES (50): a dimension column may hold ids; group "
                         "by fewer or coarser columns, or raise VM_MAX_SERIES")  # fmt: skip
    assert f"series for {day}, " in line
    assert results_of(install) == before, "nothing written for the refused day"
    scored = run("deploy.py", "--date", day, cwd=install)
    assert scored.returncode == 0, "under the default ceiling the same day scores: " + scored.stderr
    trained = run("train.py", cwd=install, VM_MAX_SERIES="50")
    assert trained.returncode == 1 and "more than VM_MAX_SERIES (50)" in trained.stderr


def test_extra_query_columns_are_ignored_with_a_warning(install, caplog):
    sql = (
        "SELECT DATE(created_at) AS date, channelid, actioncode, user_agent, 'eu' AS region, "
        f"COUNT(*) AS count {WHERE_DAY} {GROUP_DAY}"
    )
    engine = db.make_engine(f"sqlite:///{install / 'data' / 'demo.db'}")
    plain = db.read_query(install / "sql" / "daily_volume.sql")
    extra = db.read_query(install / query_file(install, sql))
    with caplog.at_level("WARNING"):
        counts = [
            etl.regroup(db.fetch(engine, query, LAST_DAY, LAST_DAY + dt.timedelta(days=1)))
            for query in (plain, extra)
        ]
    assert "the query's extra column(s) region are ignored" in caplog.text
    pd.testing.assert_frame_equal(counts[0], counts[1])
    assert counts[0]["count"].sum() > 1000


def test_a_day_without_rows_is_the_missing_day_alert(install):
    result = run("deploy.py", "--date", str(MISSING_DAY), "--dry-run", cwd=install)
    assert result.returncode == 0, result.stderr
    summary = (install / "results" / "default" / str(MISSING_DAY) / "summary.json").read_text()
    assert '"missing_day": true' in summary and '"alert": true' in summary
    assert (
        "no data at all"
        in (install / "results" / "default" / str(MISSING_DAY) / "email.txt").read_text()
    )


def test_a_day_before_the_training_window_is_scored_with_a_warning(install):
    early = FIRST_DAY - dt.timedelta(days=10)
    result = run("deploy.py", "--date", str(early), "--dry-run", cwd=install)
    assert result.returncode == 0, result.stderr
    assert (
        f"{early} is before the training window of model version 1 "
        f"({FIRST_DAY}..{LAST_DAY})" in log_of(install)
    )
    assert (install / "results" / "default" / str(early) / "scores.csv").is_file()


def test_a_day_of_only_new_series_flags_the_known_ones_and_reports_the_new(install):
    day = LAST_DAY - dt.timedelta(days=1)
    with sqlite3.connect(install / "data" / "demo.db") as connection:  # the channels renamed
        connection.execute(
            "UPDATE activityhistory SET channelid = 'new-' || channelid WHERE created_at >= ? "
            "AND created_at < ?",
            (str(day), str(LAST_DAY)),
        )
    result = run("deploy.py", "--date", str(day), "--dry-run", cwd=install)
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(
        install / "results" / "default" / str(LAST_DAY - dt.timedelta(days=1)) / "scores.csv"
    )
    new = scores[scores["channelid"].str.startswith("new-")]
    known = scores[~scores["channelid"].str.startswith("new-")]
    assert len(new) > 0 and set(new["cause"]) == {"new_series"} and not new["is_anomaly"].any()
    assert (known["count"] == 0).all()
    expected_some = known["expected_low"] > 10  # below the min_change floor a 0 is no news
    assert expected_some.sum() >= 10 and known.loc[expected_some, "is_anomaly"].all()


def test_a_misspelt_setting_in_env_is_warned_about_and_ignored(install):
    (install / ".env").write_text("VM_DATABSE_URL=sqlite:///data/other.db\nVM_LOG_LEVEL=INFO\n")
    result = run("deploy.py", "--date", str(LAST_DAY), "--dry-run", cwd=install)
    assert result.returncode == 0, result.stderr
    assert "unknown setting VM_DATABSE_URL is ignored" in result.stderr
    assert "unknown setting VM_DATABSE_URL is ignored" in log_of(install)


def test_odd_user_agents_in_the_database_are_counted_as_other(install):
    """NULL, empty, 10 KB, invalid UTF-8 and control characters: every event is counted."""
    day = LAST_DAY - dt.timedelta(days=2)
    odd = [None, "", "x" * 10_240, b"\xff\xfe Mozilla \x80", "\x00\x1b[31m\x07", "Mozilla/5.0 \r\n"]
    stamp = f"{day} 12:00:00"
    with sqlite3.connect(install / "data" / "demo.db") as connection:
        connection.executemany(
            "INSERT INTO activityhistory (created_at, channelid, actioncode, user_agent) "
            "VALUES (?, 'web', 'view', ?)",
            [(stamp, agent) for agent in odd],
        )
    before = run("deploy.py", "--date", str(day), "--dry-run", cwd=install)
    assert before.returncode == 0, before.stderr
    assert "Traceback" not in before.stderr
    scores = pd.read_csv(install / "results" / "default" / str(day) / "scores.csv")
    with sqlite3.connect(install / "data" / "demo.db") as connection:
        [(events,)] = connection.execute(
            "SELECT COUNT(*) FROM activityhistory WHERE created_at >= ? AND created_at < ?",
            (str(day), str(day + dt.timedelta(days=1))),
        ).fetchall()
    assert scores["count"].sum() == events


# --- property-based: whatever the user agents, the ETL counts every event -------------------

ODD_AGENTS = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cs", "Zs"]), max_size=50),
    st.binary(max_size=80),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=5), st.integers(1, 3000)),
    st.sampled_from(["Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "curl/8.1", "\x00Mozilla"]),
)
ROWS = st.lists(
    st.tuples(
        st.sampled_from(["2026-06-01", "2026-06-02"]),
        st.sampled_from(["web", "api"]),
        st.sampled_from(["view", "login"]),
        ODD_AGENTS,
        st.integers(min_value=0, max_value=10**9),
    ),
    max_size=40,
)
PROPERTIES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(ROWS)
def test_regroup_keeps_every_event_whatever_the_user_agents(rows):
    columns = ["date", "channelid", "actioncode", "user_agent", "count"]
    raw = db.check_contract(pd.DataFrame(rows, columns=columns, dtype=object))  # as fetched
    grouped = etl.regroup(raw)
    assert grouped["count"].sum() == sum(r[4] for r in rows)
    assert not grouped.duplicated(["date", *etl.SERIES_KEYS]).any()
    assert all(isinstance(f, str) and f for f in grouped["os_family"])


@PROPERTIES
@given(st.lists(ODD_AGENTS, max_size=30))
def test_os_families_match_user_agents_on_any_text(values):
    families = agents.os_families(pd.Series(values, dtype=object))
    assert len(families) == len(values)
    for value, family in zip(values, families, strict=True):
        if isinstance(value, str) and value.strip() and value.isprintable():
            assert family == agents.slow_os_family(value), value
        assert isinstance(family, str) and family


@PROPERTIES
@given(
    st.lists(
        st.one_of(
            st.none(), st.integers(-5, 10**12), st.floats(allow_nan=True), st.text(max_size=6)
        ),
        min_size=1,
        max_size=20,
    )
)
def test_counts_are_whole_non_negative_numbers_or_a_query_error(counts):
    frame = pd.DataFrame(
        {
            "date": ["2026-06-01"] * len(counts),
            "channelid": "web",
            "actioncode": "view",
            "user_agent": "curl/8.1",
            "count": pd.Series(counts, dtype=object),
        }
    )
    try:
        checked = db.check_contract(frame)
    except QueryError as exc:
        assert str(exc).startswith("the query column count has") and "\n" not in str(exc)
        return
    assert checked["count"].dtype == "int64" and (checked["count"] >= 0).all()
    assert (checked["count"] == pd.to_numeric(frame["count"])).all()
