"""The nightly job as an unattended batch job: late alerts delivered once, a model version
pinned for a backfill, every scoring in the state store, and the backfill's report."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from conftest import FIRST_DAY, LAST_DAY, MISSING_DAY, STALL_DAY, free_port, smtp_env
from volume_monitor import cli, clock, jobs, results, state, tracking
from volume_monitor.errors import AlertDeliveryError, ConfigError, ModelNotFoundError
from volume_monitor.results import RunSummary

DAY = dt.timedelta(days=1)


def read_summary(settings, day: dt.date) -> dict:
    return json.loads((settings.results_dir / "default" / str(day) / "summary.json").read_text())


def delivery(settings, day: dt.date) -> state.Delivery | None:
    """The outbox row of the default monitor's alert email for ``day``."""
    with state.open_store(settings.state_url) as store:
        return store.delivery("default", day, "email", "alert")


def test_smtp_down_on_one_day_then_up_delivers_the_late_alert_once(trained_settings, smtp_server):
    port, inbox = smtp_server
    down = trained_settings(**smtp_env(free_port()))
    with pytest.raises(AlertDeliveryError, match=r"email \(127.0.0.1:\d+\): .*refused"):
        jobs.deploy(down, STALL_DAY)
    waiting = delivery(down, STALL_DAY)
    assert (waiting.status, waiting.attempts) == ("failed", 1)
    assert "Connection refused" in waiting.last_error
    failed = read_summary(down, STALL_DAY)
    assert failed["notified"] is False and "Connection refused" in failed["delivery_error"]

    up = trained_settings(**smtp_env(port))
    jobs.deploy(up, STALL_DAY + DAY)  # a normal day: the late alert, then its resolved notice
    [message] = inbox.messages
    assert message["Subject"] == (
        f"[volume-monitor] {STALL_DAY}, {STALL_DAY + DAY}: 2 notices (default, default)"
    )
    assert (
        message.get_body(preferencelist=("plain",))
        .get_content()
        .startswith(
            f"2 notices: default {STALL_DAY} alert (late), default {STALL_DAY + DAY} resolved."
        )
    )
    text = message.get_body(preferencelist=("plain",)).get_content()
    late, resolved = text.split(f"== default: {STALL_DAY + DAY}: resolved")
    assert "\nSent late: this alert could not be delivered when it was raised" in late
    assert "mobile/" in late and "Android" in late, "the original content, the stalled series"
    assert f"The alert of {STALL_DAY} is resolved." in resolved
    delivered = read_summary(up, STALL_DAY)
    assert delivered["notified"] is True and delivered["late"] is True
    sent = delivery(up, STALL_DAY)
    assert (sent.status, sent.attempts) == ("sent", 2) and sent.sent_at

    received = len(inbox.messages)
    jobs.deploy(up, STALL_DAY + DAY)
    jobs.deploy(up, STALL_DAY + 2 * DAY)
    assert len(inbox.messages) == received, "neither the late alert nor the day's is sent twice"


def test_dry_run_leaves_a_pending_alert_for_a_real_run(trained_settings, smtp_server):
    port, inbox = smtp_server
    with pytest.raises(AlertDeliveryError):
        jobs.deploy(trained_settings(**smtp_env(free_port())), STALL_DAY)
    jobs.deploy(trained_settings(**smtp_env(port)), STALL_DAY + DAY, dry_run=True)
    assert inbox.messages == []
    assert delivery(trained_settings(), STALL_DAY).status == "failed"


def test_backfill_pins_a_model_version_and_emails_only_with_notify(trained_settings, smtp_server):
    port, inbox = smtp_server
    settings = trained_settings(**smtp_env(port))
    pinned = jobs.train(settings, FIRST_DAY, LAST_DAY + DAY, overrides={"n_estimators": "50"})
    assert pinned.version == "2"

    quiet = jobs.backfill(settings, STALL_DAY - DAY, STALL_DAY + DAY)
    assert [r.summary.model_version for r in quiet] == ["1", "1", "1"]
    assert inbox.messages == [] and quiet[1].summary.alert is True
    assert (quiet[1].folder / results.EMAIL_FILE).is_file()

    loud = jobs.backfill(settings, STALL_DAY - DAY, STALL_DAY + DAY, notify=True, version="2")
    assert [r.summary.model_version for r in loud] == ["2", "2", "2"]
    alerting = [r.summary.date for r in loud if r.summary.alert]
    assert str(STALL_DAY) in alerting
    subjects = [m["Subject"] for m in inbox.messages]
    alerts = [s for s in subjects if "resolved" not in s]
    assert sorted(s.split()[1].rstrip(":") for s in alerts) == alerting
    resolved = [s for s in subjects if "resolved" in s]
    assert resolved == [f"[volume-monitor] {STALL_DAY + DAY}: resolved, back to normal "
                        f"(alerted {STALL_DAY})"]  # fmt: skip
    with state.open_store(settings.state_url) as store:
        days = store.days("default", STALL_DAY - DAY, STALL_DAY + DAY)
    assert [(d.kind, d.model_version) for d in days] == [("backfill", "2")] * 3
    with pytest.raises(ModelNotFoundError, match="'volume-monitor' has no version 9"):
        jobs.backfill(settings, STALL_DAY, STALL_DAY, version="9")


def test_backfill_refuses_an_empty_range_or_a_day_not_over(trained_settings):
    settings = trained_settings()
    with pytest.raises(ConfigError, match="is after --end"):
        jobs.backfill(settings, STALL_DAY, STALL_DAY - DAY)
    with pytest.raises(ConfigError, match="is not over yet"):
        jobs.backfill(settings, STALL_DAY, clock.today(settings))
    assert not settings.results_dir.exists() or not any(settings.results_dir.glob("20*"))


def test_every_scoring_is_recorded_in_the_state_store(trained_settings):
    settings = trained_settings()
    stalled = jobs.score_day(settings, STALL_DAY, dry_run=True)
    jobs.score_day(settings, MISSING_DAY, dry_run=True)
    with state.open_store(settings.state_url) as store:
        days = {d.date: d for d in store.days("default", FIRST_DAY, LAST_DAY)}
        counts = store.history("default", STALL_DAY, STALL_DAY)
    assert sorted(days) == [MISSING_DAY, STALL_DAY]
    day = days[STALL_DAY]
    assert (day.kind, day.model_version, day.alert) == ("dry run", "1", True)
    assert day.anomalies == stalled.summary.anomalies > 0 and day.rows == stalled.summary.rows
    assert day.summary["reasons"] == stalled.summary.reasons
    assert days[MISSING_DAY].missing_day is True
    assert len(counts) == stalled.summary.rows and set(counts["source"]) == {"scored"}
    assert int(counts["is_anomaly"].sum()) == stalled.summary.anomalies


def test_progress_line_and_backfill_report():
    assert cli.progress_line(9, 30, LAST_DAY, width=10) == f"[###.......]  9/30 {LAST_DAY}"
    assert cli.progress_line(30, 30, LAST_DAY, width=10) == f"[##########] 30/30 {LAST_DAY}"


def test_a_long_backfill_fits_one_screen(tmp_path):
    """Three years before the data starts: the missing days are one range, not 830 lines."""
    first = dt.date(2023, 1, 1)

    def scored(number: int) -> jobs.ScoreResult:
        day = first + dt.timedelta(days=number)
        missing, alerting = number < 830, number < 830 or number % 7 == 0
        summary = RunSummary(
            str(day), "default", 10, 0 if missing else 3, 0.0, alerting,
            ["missing day: the query returned no rows"] if missing else ["3 anomalous series"],
            "models:/x@production", "1", "run", missing_day=missing,
        )  # fmt: skip
        return jobs.ScoreResult(tmp_path / str(day), summary)

    report = cli.backfill_report([scored(n) for n in range(1095)], notified=False)
    lines = report.splitlines()
    assert len(lines) <= 40, len(lines)
    assert "missing days: 830 (2023-01-01..2025-04-09 (830 days))" in lines
    assert f"days alerting: {830 + len(range(833, 1095, 7))}" in lines
    assert lines[-2].startswith("emails: ") and "  ... and 8 more (volume-monitor history)" in lines


def test_a_rescore_that_finds_the_day_normal_withdraws_its_undelivered_alert(
    trained_settings, smtp_server
):
    port, inbox = smtp_server
    down = trained_settings(**smtp_env(free_port()))
    with pytest.raises(AlertDeliveryError):
        jobs.deploy(down, STALL_DAY)
    assert delivery(down, STALL_DAY).status == "failed"
    lenient = jobs.train(
        down, FIRST_DAY, LAST_DAY + DAY,
        overrides={"band": "1000", "min_change": "100000", "group_threshold": "0"},
    )  # fmt: skip
    tracking.promote(down, lenient.version)

    normal = jobs.score_day(down, STALL_DAY)
    assert normal.summary.alert is False
    assert delivery(down, STALL_DAY).status == "withdrawn"

    jobs.deploy(trained_settings(**smtp_env(port)), STALL_DAY + DAY)
    assert not [m for m in inbox.messages if "LATE" in m["Subject"]], "nothing stale is sent"


def test_a_production_version_whose_run_was_deleted_scores_with_a_warning(trained_settings, caplog):
    settings = trained_settings()
    model = tracking.load_model(settings)
    tracking.client(settings).delete_run(model.run_id)
    with caplog.at_level("WARNING"):
        result = jobs.score_day(settings, LAST_DAY, dry_run=True)
    assert result.summary.model_version == model.version
    [warning] = [
        r.getMessage() for r in caplog.records if "was deleted in MLflow" in r.getMessage()
    ]
    assert warning.startswith(
        f"tracking: volume-monitor version {model.version} comes from run {model.run_id}, "
        "which was deleted in MLflow: it still scores"
    )


def test_a_run_left_running_by_a_killed_training_is_ended_by_the_next(trained_settings, caplog):
    import socket

    from mlflow.entities import RunStatus

    settings = trained_settings()
    mlflow_client = tracking.client(settings)
    experiment = tracking.experiment_id(settings, settings.monitor().experiment)
    dead_pid = str(2**22 + 1)  # above Linux's largest pid: no such process
    host = socket.gethostname()
    stale = mlflow_client.create_run(
        experiment, tags={tracking.PID_TAG: dead_pid, tracking.HOST_TAG: host}
    ).info.run_id
    alive = mlflow_client.create_run(
        experiment, tags={tracking.PID_TAG: str(os.getpid()), tracking.HOST_TAG: host}
    ).info.run_id
    with caplog.at_level("WARNING"):
        jobs.train(settings, FIRST_DAY, LAST_DAY + DAY, overrides={"n_estimators": "20"})
    status = {r: RunStatus.to_string(RunStatus.from_string(mlflow_client.get_run(r).info.status))
              for r in (stale, alive)}  # fmt: skip
    assert status == {stale: "KILLED", alive: "RUNNING"}, "only the dead process's run"
    assert any(f"run {stale} was left RUNNING" in r.getMessage() for r in caplog.records)
    mlflow_client.set_terminated(alive)
