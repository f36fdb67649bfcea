"""Deadlines on the monitored database: a server that accepts and never answers is given up
after ``VM_CONNECT_TIMEOUT``, a query running past ``VM_QUERY_TIMEOUT`` is stopped on the
server itself (PostgreSQL, MariaDB) or interrupted (SQLite), each in one line; a run that
meets one exits 1 and leaves its lock free."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from test_db import END, START, Events

from conftest import LAST_DAY, ROOT, error_lines, results_of, run, server_url
from volume_monitor import runlock
from volume_monitor.db import fetch, make_engine, read_query
from volume_monitor.errors import DatabaseError, QueryError

SLOW = {  # a WHERE condition that takes about 5 s, per dialect
    "postgresql": "(SELECT 1 FROM pg_sleep(5)) = 1",
    "mariadb": "(SELECT SLEEP(5)) = 0",
    "sqlite": "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
    "WHERE i < 300000000) SELECT MAX(i) FROM n) > 0",
}


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg2://vm@127.0.0.1:{port}/events",
            "mysql+pymysql://vm@127.0.0.1:{port}/events"],
    ids=["postgresql", "mariadb"],
)  # fmt: skip
def test_a_server_that_never_answers_is_given_up_after_the_connect_timeout(silent_port, url):
    engine = make_engine(url.format(port=silent_port), connect_timeout=1)
    query = read_query_for_sleep()
    began = time.monotonic()
    with pytest.raises(DatabaseError) as caught:
        fetch(engine, query, START, END)
    took = time.monotonic() - began
    assert took < 10, took
    message = str(caught.value)
    assert message.startswith(f"cannot reach the database {url.split('//')[0]}//vm@127.0.0.1:")
    assert "timeout" in message or "timed out" in message
    assert "\n" not in message


def read_query_for_sleep():
    from conftest import QUERY

    return read_query(QUERY)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def slow_events(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}" if request.param == "sqlite" else None
    table = Events(url or server_url(request.param), tmp_path)
    sql = table.query_path.read_text(encoding="utf-8").replace(
        "WHERE ", f"WHERE {SLOW[request.param]} AND ", 1
    )
    table.slow_path = table.sql_file("slow.sql", sql)
    yield table
    table.drop()


def test_a_query_past_the_query_timeout_is_stopped_on_the_server(slow_events):
    engine = make_engine(slow_events.url, query_timeout=1)
    began = time.monotonic()
    with pytest.raises(QueryError) as caught:
        fetch(engine, read_query(slow_events.slow_path), START, END)
    took = time.monotonic() - began
    engine.dispose()
    assert took < 4.5, f"stopped after {took:.1f} s, not at its deadline"
    assert "it ran longer than VM_QUERY_TIMEOUT and was stopped (" in str(caught.value)
    assert sleeping_queries(slow_events) == 0, "the server's query went on after the client gave up"


def sleeping_queries(slow_events) -> int:
    """How many of the slow query's PostgreSQL backends still run (0 on other servers, which
    the tests check by the client's own stop)."""
    if make_url(slow_events.url).get_backend_name() != "postgresql":
        return 0
    with slow_events.setup_engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' "
                 "AND state = 'active' AND pid <> pg_backend_pid()")
        ).scalar_one()  # fmt: skip


@pytest.mark.parametrize("slow_events", ["postgresql"], indirect=True)
def test_without_a_deadline_the_same_query_completes(slow_events):
    """The control: the query only sleeps; the deadline is what stops it above."""
    frame = fetch(make_engine(slow_events.url), read_query(slow_events.slow_path), START, END)
    assert frame["count"].sum() == slow_events.count_between(START, END)


def test_a_run_that_meets_the_query_timeout_exits_1_and_frees_its_lock(install):
    slow = install / "sql" / "slow.sql"
    slow.write_text((install / "sql" / "daily_volume.sql").read_text().replace(
        "WHERE ", f"WHERE {SLOW['sqlite']} AND ", 1))  # fmt: skip
    result = run("deploy.py", "--date", str(LAST_DAY), cwd=install,
                 VM_QUERY="sql/slow.sql", VM_QUERY_TIMEOUT="1")  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "the query failed on sqlite:///" in line
    assert "it ran longer than VM_QUERY_TIMEOUT and was stopped (interrupted)" in line
    again = run("deploy.py", "--date", str(LAST_DAY - dt.timedelta(days=1)), cwd=install)
    assert again.returncode == 0, "the lock was released: " + again.stderr


# --- the run's own deadline (VM_RUN_TIMEOUT) -------------------------------------------------

RUN_TIMEOUT_LINE = "the run took longer than VM_RUN_TIMEOUT (2 s) and was stopped"


def test_a_run_past_its_deadline_stops_the_query_on_the_server_and_exits_1(install, slow_events):
    """The query alone would take 5 s and VM_QUERY_TIMEOUT allows 600: the run's deadline is
    what stops it, on the server too."""
    before = results_of(install)
    result = run("deploy.py", "--date", str(LAST_DAY), cwd=install, VM_RUN_TIMEOUT="2",
                 VM_QUERY_TIMEOUT="600", VM_DATABASE_URL=slow_events.url,
                 VM_QUERY=str(slow_events.slow_path), VM_LOG_LEVEL="DEBUG")  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result.stderr)
    assert line.endswith(RUN_TIMEOUT_LINE)
    took = seconds_between(result.stderr, "deadline: the run must end within 2 s", line)
    assert took < 3.5, f"stopped after {took:.1f} s, not at the run's deadline:\n{result.stderr}"
    assert sleeping_queries(slow_events) == 0, "the server's query went on after the run gave up"
    assert results_of(install) == before, "earlier results untouched"
    again = run("deploy.py", "--date", str(LAST_DAY - dt.timedelta(days=1)), cwd=install)
    assert again.returncode == 0, "the lock was released: " + again.stderr


def seconds_between(log: str, first: str, last: str) -> float:
    """Seconds between the log lines holding ``first`` and ``last``, by their timestamps."""

    def stamp(part: str) -> dt.datetime:
        line = next(line for line in log.splitlines() if part in line)
        return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")

    return (stamp(last) - stamp(first)).total_seconds()


def test_waiting_for_the_lock_counts_against_the_run_deadline(install):
    folder = install / "results" / "default"
    with runlock.held(folder):
        result = run("deploy.py", "--date", str(LAST_DAY), cwd=install, VM_RUN_TIMEOUT="2",
                     VM_LOCK_WAIT="600", VM_LOG_LEVEL="DEBUG")  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result.stderr)
    assert (
        line.endswith(RUN_TIMEOUT_LINE) and "waiting up to 600 s for the run lock" in result.stderr
    )
    assert seconds_between(result.stderr, "deadline: the run must end within", line) < 3
    again = run("deploy.py", "--date", str(LAST_DAY), cwd=install, VM_RUN_TIMEOUT="300")
    assert again.returncode == 0, "within its deadline the run scores: " + again.stderr


def test_a_run_held_up_past_its_deadline_by_a_thread_is_ended_by_the_watchdog(tmp_path):
    """A worker thread busy in a call that ignores the alarm: the main thread unwinds, the
    process would wait for the thread at exit, and the watchdog ends it with exit 1."""
    script = tmp_path / "held_up.py"
    script.write_text(
        "import logging, sys, threading, time\n"
        "from volume_monitor import deadline\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
        "deadline.GRACE = 1\n"
        "busy = threading.Thread(target=time.sleep, args=(60,))\n"
        "busy.start()\n"
        "try:\n"
        "    with deadline.limit(1):\n"
        "        time.sleep(5)\n"
        "except deadline.RunTimeout as exc:\n"
        "    print('unwound:', exc, file=sys.stderr)\n"
    )
    began = time.monotonic()
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)  # fmt: skip
    took = time.monotonic() - began
    assert result.returncode == 1 and took < 10, (took, result.stderr)
    lines = result.stderr.splitlines()
    assert lines[0] == "unwound: the run took longer than VM_RUN_TIMEOUT (1 s) and was stopped"
    assert lines[-1] == ("ERROR error: the run took longer than VM_RUN_TIMEOUT (1 s) and was "
                         "stopped (it did not stop within 1 s more)")  # fmt: skip


def test_a_run_within_its_deadline_leaves_no_alarm_behind(tmp_path):
    from volume_monitor import deadline

    with deadline.limit(5):
        assert deadline.bounded(600) <= 6 and deadline.bounded(None) <= 6
    assert not deadline.expired() and deadline.bounded(600) == 600
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler)
