"""Faults around a nightly run: the database dropping mid-query, SMTP refusing, hanging or
rejecting the login, the MLflow store or the model's artifacts gone, results that cannot be
written, a process killed while writing. Each is one line with the exit code DESIGN.md gives;
nothing written earlier is lost, and an undelivered alert waits in ``pending_alert.json``."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from conftest import (
    LAST_DAY,
    ROOT,
    clean_environment,
    error_lines,
    log_of,
    outbox,
    results_of,
    run,
    server_url,
    small_spec,
    smtp_env,
)  # fmt: skip
from volume_monitor import results
from volume_monitor.alerting.content import Alert
from volume_monitor.demo import write_demo

SLOW_QUERY = """\
SELECT DATE(created_at) AS date, channelid, actioncode, user_agent, COUNT(*) AS count
FROM activityhistory, (SELECT pg_sleep(30)) AS pause
WHERE created_at >= :start AND created_at < :end
GROUP BY DATE(created_at), channelid, actioncode, user_agent
"""


def deploy(install, *args, **env):
    return run("deploy.py", "--date", str(LAST_DAY), *args, cwd=install, **env)


def test_database_dropping_mid_query_is_one_line_and_keeps_the_results(install):
    url = server_url("postgresql")
    write_demo(create_engine(url), small_spec(), replace=True)
    tagged = make_url(url).update_query_dict({"application_name": "vm-dropped-query"})
    (install / "sql" / "slow.sql").write_text(SLOW_QUERY)
    before = results_of(install)
    env = clean_environment()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy.py"), "--date", str(LAST_DAY)],
        cwd=install, env={
            **env, "VM_QUERY": "sql/slow.sql",
            "VM_DATABASE_URL": tagged.render_as_string(hide_password=False),
        },
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    terminated = 0
    with admin.connect() as connection:
        for _ in range(300):  # the query (run at its first FETCH) is running within 30 s
            terminated = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'vm-dropped-query' AND state = 'active'"
                )
            ).scalar()
            if terminated:
                break
            time.sleep(0.1)
    admin.dispose()
    _, stderr = process.communicate(timeout=60)
    assert terminated == 1, stderr
    assert process.returncode == 1 and "Traceback" not in stderr
    [line] = error_lines(stderr)
    assert "the query failed on postgresql+psycopg2://" in line
    assert line.endswith("server closed the connection unexpectedly")
    assert results_of(install) == before


def test_smtp_refusing_every_recipient_exits_3_and_keeps_the_alert(install, smtp_server):
    port, inbox = smtp_server
    inbox.refuse.add("oncall@example.com")
    result = deploy(install, **smtp_env(port))
    assert result.returncode == 3 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "every recipient was refused: oncall@example.com (550 5.1.1 No such mailbox)" in line
    folder = install / "results" / "default" / str(LAST_DAY)
    assert json.loads((folder / "summary.json").read_text())["notified"] is False
    [waiting] = outbox(install)
    assert (waiting.date, waiting.status, waiting.attempts) == (LAST_DAY, "failed", 1)
    assert "every recipient was refused" in waiting.last_error
    assert Alert.from_json(waiting.payload).subject.startswith(f"[volume-monitor] {LAST_DAY}")
    assert inbox.messages == []


def test_smtp_hanging_times_out_with_exit_3(install, silent_port):
    began = time.perf_counter()
    result = deploy(install, **{**smtp_env(silent_port), "SMTP_TIMEOUT": "1"})
    assert result.returncode == 3 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert f"email (127.0.0.1:{silent_port}): timed out: no answer within SMTP_TIMEOUT; " in line
    assert time.perf_counter() - began < 60
    [waiting] = outbox(install)
    assert waiting.status == "failed" and "timed out" in waiting.last_error


def test_smtp_rejecting_the_login_exits_3_without_the_password(install, smtp_server):
    port, inbox = smtp_server
    secret = "Smtp-wrong-7731"
    result = deploy(
        install, **smtp_env(port), SMTP_USER="monitor", SMTP_PASSWORD=secret, VM_LOG_LEVEL="DEBUG"
    )
    assert result.returncode == 3 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "535" in line and "Authentication" in line
    assert set(inbox.logins) == {("monitor", secret)} and inbox.messages == []
    assert secret not in result.stderr + result.stdout + log_of(install)
    assert not any(secret.encode() in content for content in results_of(install).values())


def test_missing_mlflow_store_is_one_line_and_not_created(install):
    store = install / "elsewhere" / "mlflow.db"
    result = deploy(install, MLFLOW_TRACKING_URI=f"sqlite:///{store}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert f"the MLflow store file {store} does not exist (train.py creates it)" in line
    assert not store.exists() and not store.parent.exists()


def test_deleted_model_artifacts_are_one_line_exit_1(workdir):
    trained = run(
        "train.py", "--end", str(LAST_DAY + dt.timedelta(days=1)), "--promote", cwd=workdir
    )
    assert trained.returncode == 0, trained.stderr
    shutil.rmtree(workdir / "mlruns" / "artifacts")
    result = run("deploy.py", "--date", str(LAST_DAY), cwd=workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert line.endswith(
        "the artifacts of volume-monitor version 1 cannot be read: No such artifact: 'model'"
    )
    assert not (workdir / "results" / "default" / str(LAST_DAY)).exists()


def test_results_that_cannot_be_written_are_one_line_exit_1(install):
    blocker = install / "not-a-folder"
    blocker.write_text("a file where the results should go\n")
    result = deploy(install, VM_RESULTS_DIR=str(blocker / "results"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "cannot write the results" in line
    assert blocker.read_text() == "a file where the results should go\n"


KILLED_WRITER = """\
import sys, time
from pathlib import Path
from volume_monitor.files import write_atomic

def half_then_wait(path):
    with open(path, "w") as handle:
        handle.write("date,channelid\\n2026-")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)

write_atomic(Path(sys.argv[1]), half_then_wait)
"""


def test_a_process_killed_mid_write_leaves_the_previous_file(install):
    scores = install / "results" / "default" / str(LAST_DAY) / "scores.csv"
    before = scores.read_bytes()
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(scores)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    assert scores.read_bytes() == before, "the file a reader sees is the old one, whole"
    rerun = deploy(install, "--dry-run")
    assert rerun.returncode == 0, rerun.stderr
    assert results.read_summary(scores.parent)["date"] == str(LAST_DAY)
    assert scores.read_bytes() == before, "the rerun wrote the same scores again"


def test_a_full_disk_under_the_log_is_one_warning_and_the_run_goes_on(install, small_disk):
    (small_disk / "filler-rest").write_bytes(b"\0" * (16 * 1024))  # nothing left at all
    log_file = small_disk / "logs" / "volume-monitor.log"
    result = deploy(install, "--dry-run", VM_LOG_FILE=str(log_file))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "cannot write the log" in line]
    assert warning.endswith(
        f"cannot write the log file {log_file}: No space left on device; logging to the "
        "console only"
    )
    assert result.stdout.startswith(f"{LAST_DAY}: ") and "results in" in result.stdout
