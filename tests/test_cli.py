"""train.py and deploy.py as cron runs them: separate processes, exit codes, one clear line on
a known error and never a traceback."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time

import pytest

from conftest import (
    FIRST_DAY,
    LAST_DAY,
    MISSING_DAY,
    QUERY,
    STALL_DAY,
    error_lines,
    free_port,
    run,
    settings_in,
    smtp_env,
    start,
)  # fmt: skip
from volume_monitor import runlock, tracking


def test_train_then_deploy_with_default_paths(workdir):
    trained = run(
        "train.py", "--start", str(FIRST_DAY), "--end", "2026-07-01", "--promote", cwd=workdir
    )
    assert trained.returncode == 0, trained.stderr
    assert "run id: " in trained.stdout
    assert "model: volume-monitor version 1, alias @production" in trained.stdout

    deployed = run("deploy.py", "--date", str(LAST_DAY), "--dry-run", cwd=workdir)
    assert deployed.returncode == 0, deployed.stderr
    folder = workdir / "results" / "default" / str(LAST_DAY)
    assert f"results in {folder}" in deployed.stdout
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["alert"] is True and summary["notified"] is False
    assert (workdir / "mlruns" / "mlflow.db").is_file()
    assert any((workdir / "mlruns" / "artifacts").iterdir())
    assert (workdir / "logs" / "volume-monitor.log").read_text().count("deploy: ") == 1
    assert "Traceback" not in trained.stderr + deployed.stderr


def test_unreachable_database_is_one_line_exit_1_without_password(workdir):
    result = run(
        "train.py",
        cwd=workdir,
        VM_DATABASE_URL="postgresql+psycopg2://monitor:s3cret-pw@127.0.0.1:1/events",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "cannot reach the database postgresql+psycopg2://monitor:***@127.0.0.1:1/events" in line
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "s3cret-pw" not in (workdir / "logs" / "volume-monitor.log").read_text()


def test_query_missing_a_column_is_one_line_exit_1(workdir):
    bad = workdir / "sql" / "no_agent.sql"
    bad.write_text(
        "SELECT DATE(created_at) AS date, channelid, COUNT(*) AS count FROM activityhistory\n"
        "WHERE created_at >= :start AND created_at < :end GROUP BY DATE(created_at), channelid\n"
    )
    result = run("train.py", cwd=workdir, VM_QUERY="sql/no_agent.sql")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "missing the column(s) actioncode, user_agent (or os_family)" in line


def test_no_production_alias_is_one_line_exit_1(workdir):
    tracking.client(settings_in(workdir))  # an MLflow store without any model
    result = run("deploy.py", "--date", str(LAST_DAY), cwd=workdir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "no model version of 'volume-monitor' has the alias 'production'" in line
    assert not (workdir / "results" / "default" / str(LAST_DAY)).exists()


def test_bad_setting_is_reported_before_anything_runs(workdir):
    result = run("deploy.py", cwd=workdir, SMTP_SSL="maybe")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "volume-monitor: error: SMTP_SSL must be true or false, not 'maybe'"
    )


def test_env_file_is_read_and_the_process_environment_wins(workdir):
    (workdir / ".env").write_text(
        "VM_DATABASE_URL=sqlite:///data/nope.db\nVM_QUERY=sql/from_dotenv.sql\n"
    )
    result = run("train.py", cwd=workdir, VM_DATABASE_URL="sqlite:///data/demo.db")
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "cannot read the query file" in line and "from_dotenv.sql" in line
    assert "nope.db" not in result.stderr


def test_promote_and_runs_commands(trained_settings, tmp_path, monkeypatch, capsys):
    from volume_monitor import cli, jobs

    settings = trained_settings()
    second = jobs.train(settings, FIRST_DAY, LAST_DAY, overrides={"n_estimators": "20"})
    monkeypatch.chdir(tmp_path)
    for key in ("VM_DATABASE_URL", "MLFLOW_TRACKING_URI", "VM_RESULTS_DIR", "VM_LOG_FILE"):
        monkeypatch.setenv(key, settings_env(settings)[key])
    monkeypatch.setenv("VM_QUERY", str(QUERY))

    assert cli.main(["promote", second.run_id]) == 0
    assert "volume-monitor version 2 is now @production" in capsys.readouterr().out
    assert cli.main(["runs"]) == 0
    listing = capsys.readouterr().out
    [row] = [line for line in listing.splitlines() if line.startswith(second.run_id)]
    assert " 2 " in row and "production" in row
    assert cli.main(["promote", "7"]) == 1
    assert "has no version 7" in capsys.readouterr().err


def settings_env(settings) -> dict[str, str]:
    return {
        "VM_DATABASE_URL": settings.monitor().database_url,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "VM_RESULTS_DIR": str(settings.results_dir),
        "VM_LOG_FILE": str(settings.log_file),
    }


def test_demo_db_never_overwrites_a_real_events_table(tmp_path):
    real = tmp_path / "prod.db"
    with sqlite3.connect(real) as connection:
        connection.execute("CREATE TABLE activityhistory (id INTEGER, channelid TEXT)")
        connection.execute("INSERT INTO activityhistory VALUES (1, 'real')")
    url = f"sqlite:///{real}"
    refused = run("volume_monitor/cli.py", "demo-db", "--url", url, "--days", "3", cwd=tmp_path)
    assert refused.returncode == 1
    assert "already has an activityhistory table that the demo did not write" in refused.stderr
    with sqlite3.connect(real) as connection:
        assert connection.execute("SELECT channelid FROM activityhistory").fetchall() == [("real",)]

    replaced = run(
        "volume_monitor/cli.py", "demo-db", "--url", url, "--days", "3", "--replace", cwd=tmp_path
    )
    assert replaced.returncode == 0, replaced.stderr
    again = run("volume_monitor/cli.py", "demo-db", "--url", url, "--days", "3", cwd=tmp_path)
    assert again.returncode == 0, "a demo database may be rewritten"
    bad_days = run("volume_monitor/cli.py", "demo-db", "--days", "0", cwd=tmp_path)
    assert bad_days.returncode == 2 and "at least 1" in bad_days.stderr


def test_unwritable_log_file_and_results_are_one_line_errors(trained_workdir):
    workdir = trained_workdir
    blocked = workdir / "blocked"
    blocked.write_text("a file where a folder should be")
    log_result = run("deploy.py", cwd=workdir, VM_LOG_FILE=str(blocked / "vm.log"))
    assert log_result.returncode == 1 and "Traceback" not in log_result.stderr
    assert log_result.stderr.startswith("volume-monitor: error: cannot write the log file")

    results = run("deploy.py", "--date", str(LAST_DAY), cwd=workdir, VM_RESULTS_DIR=str(blocked))
    assert results.returncode == 1 and "Traceback" not in results.stderr
    [line] = error_lines(results.stderr)
    assert "cannot write the results to" in line


def test_unreachable_mlflow_store_is_one_line_without_password(workdir):
    result = run(
        "deploy.py",
        "--date",
        str(LAST_DAY),
        cwd=workdir,
        MLFLOW_TRACKING_URI="http://ops:Track-s3cret@127.0.0.1:1",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "cannot use the MLflow store http://ops:***@127.0.0.1:1" in line
    assert "Track-s3cret" not in result.stderr + result.stdout


def test_a_day_that_is_not_over_is_refused(workdir):
    result = run("deploy.py", "--date", "2999-01-01", cwd=workdir)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "2999-01-01 is not over yet in UTC" in line


def test_smtp_down_exits_3_after_writing_results(trained_workdir):
    result = run(
        "deploy.py", "--date", str(LAST_DAY), cwd=trained_workdir,
        SMTP_HOST="127.0.0.1", SMTP_PORT=str(free_port()), ALERT_TO="oncall@example.com",
    )  # fmt: skip
    assert result.returncode == 3 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "email (127.0.0.1:" in line and "kept for the next run" in line
    folder = trained_workdir / "results" / "default" / str(LAST_DAY)
    assert json.loads((folder / "summary.json").read_text())["notified"] is False
    assert (folder / "scores.csv").is_file()


@pytest.mark.parametrize("day", ["0001-01-03", "9999-12-31"])
def test_a_date_out_of_range_is_refused_in_one_line(tmp_path, day):
    result = run("deploy.py", "--date", day, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        f"argument --date: {day} is out of range (1900-01-01 to 9999-01-01)"
    )


def test_a_run_that_cannot_get_the_lock_in_time_fails_in_one_line(trained_workdir):
    results = trained_workdir / "results" / "default"
    with runlock.held(results):
        began = time.monotonic()
        blocked = run("deploy.py", "--date", str(LAST_DAY), cwd=trained_workdir, VM_LOCK_WAIT="1")
        waited = time.monotonic() - began
    assert blocked.returncode == 1 and "Traceback" not in blocked.stderr, "never exit 0 unscored"
    [line] = error_lines(blocked.stderr)
    assert (
        f"another volume-monitor run held the lock of {results} (pid {os.getpid()} since " in line
    )
    assert line.endswith("for 1 s (VM_LOCK_WAIT): this run scored nothing")
    assert "waiting up to 1 s for the run lock" in blocked.stderr and waited >= 1
    assert not (results / str(LAST_DAY)).exists(), "the second run did nothing"


def test_a_run_that_finds_the_lock_held_waits_and_then_scores(trained_workdir):
    results = trained_workdir / "results" / "default"
    with runlock.held(results):
        waiting = start("deploy.py", "--date", str(LAST_DAY), cwd=trained_workdir)
        time.sleep(3)
        assert waiting.poll() is None, "it waits while the lock is held"
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "waiting up to 3600 s for the run lock" in err
    assert (results / str(LAST_DAY) / "summary.json").is_file(), "scored once the lock was free"


def test_the_nightly_run_goes_before_a_running_backfill_and_alerts(trained_workdir, smtp_server):
    """The night's run meets a long backfill: it waits for the backfill's day in progress,
    scores and alerts yesterday (a duplicated load), and the backfill then goes on to its
    end. Neither is skipped."""
    port, inbox = smtp_server
    results = trained_workdir / "results" / "default"
    first, last = LAST_DAY - dt.timedelta(days=41), LAST_DAY - dt.timedelta(days=2)
    backfill = start("deploy.py", "--start", str(first), "--end", str(last), cwd=trained_workdir)
    while not any(results.glob("2026-*")) and backfill.poll() is None:
        time.sleep(0.2)
    nightly = run("deploy.py", "--date", str(LAST_DAY), cwd=trained_workdir, **smtp_env(port))
    backfill_running = backfill.poll() is None
    out, err = backfill.communicate(timeout=600)
    assert nightly.returncode == 0, nightly.stderr
    assert backfill_running, "the nightly run finished while the backfill still had days to do"
    assert "waiting up to 3600 s for the run lock" in nightly.stderr
    [message] = inbox.messages
    subject = message["Subject"]
    assert subject.startswith(f"[volume-monitor] {LAST_DAY}: ") and subject.endswith(" high")
    assert backfill.returncode == 0, err
    assert f"run(s) waiting for {results} go first" in err
    days = (last - first).days + 1
    assert f"backfill {first}..{last}: {days} days scored" in out
    assert len(list(results.glob("2026-*"))) == days + 1, "every backfill day and the night"
    assert not list(results.glob(".volume-monitor.lock.*")), "no waiting marker left behind"


def test_two_runs_for_different_days_both_complete(trained_workdir):
    days = [LAST_DAY, LAST_DAY - dt.timedelta(days=1)]
    runs = [
        start("deploy.py", "--date", str(day), "--dry-run", cwd=trained_workdir) for day in days
    ]
    finished = [process.communicate(timeout=300) for process in runs]
    assert [process.returncode for process in runs] == [0, 0], finished
    folders = trained_workdir / "results" / "default"
    assert all((folders / str(day) / "summary.json").is_file() for day in days)


def test_a_waiting_marker_counts_while_its_run_waits_and_not_after(tmp_path):
    """Markers of waiting runs are counted; one left by a killed run is unlocked and removed
    by the first run that looks."""
    import fcntl

    folder = tmp_path / "default"
    folder.mkdir()
    stale = folder / (runlock.WAITING + "4242.1")
    stale.write_text("")
    assert runlock.waiters(folder) == 0 and not stale.exists()
    with runlock.held(folder):
        waiting = start("volume_monitor/cli.py", "deploy", "--date", str(LAST_DAY),
                        cwd=tmp_path, VM_RESULTS_DIR=str(tmp_path), VM_MONITORS="",
                        VM_LOCK_WAIT="60")  # fmt: skip
        deadline = time.monotonic() + 60
        while runlock.waiters(folder) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert runlock.waiters(folder) == 1
        [marker] = folder.glob(runlock.WAITING + "*")
        with open(marker) as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        waiting.kill()
        waiting.wait()
    assert runlock.waiters(folder) == 0, "the killed run's marker is unlocked: removed"


def test_backfill_of_30_days_writes_30_folders_and_one_summary(trained_workdir):
    start, end = MISSING_DAY, MISSING_DAY + dt.timedelta(days=29)
    result = run("deploy.py", "--start", str(start), "--end", str(end), cwd=trained_workdir)
    assert result.returncode == 0, result.stderr
    folders = sorted(p.name for p in (trained_workdir / "results" / "default").glob("20*"))
    assert folders == [str(start + dt.timedelta(days=n)) for n in range(30)]
    monitor_dir = trained_workdir / "results" / "default"
    summaries = [json.loads((monitor_dir / f / "summary.json").read_text()) for f in folders]
    alerting = [s["date"] for s in summaries if s["alert"]]
    assert {str(MISSING_DAY), str(STALL_DAY)} <= set(alerting)
    out = result.stdout
    assert f"backfill {start}..{end}: 30 days scored with model version 1" in out
    assert f"days alerting: {len(alerting)}" in out
    assert all(f"  {day}: " in out for day in alerting if day != str(MISSING_DAY))
    assert f"missing days: 1 ({MISSING_DAY})" in out
    assert "emails: none sent (--notify sends them)" in out
    assert len(out.splitlines()) <= 24, "one screen"
    assert all((trained_workdir / "results" / "default" / d / "email.txt").is_file()
               for d in alerting)  # fmt: skip


def test_backfill_options_are_checked(trained_workdir):
    for args, message in [
        (["--start", str(LAST_DAY)], "needs both --start and --end"),
        (["--notify"], "--notify and --model go with a backfill"),
        (["--start", str(LAST_DAY), "--end", str(LAST_DAY), "--dry-run", "--notify"],
         "contradict"),
    ]:  # fmt: skip
        result = run("deploy.py", *args, cwd=trained_workdir)
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_doctor_prints_each_check_and_exits_1_when_one_fails(trained_workdir):
    result = run("volume_monitor/cli.py", "doctor", "--no-smtp-login", cwd=trained_workdir)
    lines = result.stdout.splitlines()
    assert result.returncode == 1, "SMTP is not configured"
    assert [line.split()[1] for line in lines[:-1]] == [
        "database", "query", "model", "mlflow", "state", "results", "log", "smtp",
    ]  # fmt: skip
    assert all(line.startswith("ok ") for line in lines[:7])
    assert lines[7].startswith("FAIL  smtp") and lines[-1] == "1 problem(s): smtp"
    healthy = run(
        "volume_monitor/cli.py", "doctor", "--no-smtp-login", cwd=trained_workdir,
        SMTP_HOST="127.0.0.1", ALERT_TO="oncall@example.com",
    )  # fmt: skip
    assert healthy.returncode == 0 and healthy.stdout.endswith("all checks passed\n")
