"""The nightly job as an unattended batch job: late alerts delivered once, a model version
pinned for a backfill, every scoring in the MLflow history, and the backfill's report."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from conftest import FIRST_DAY, LAST_DAY, MISSING_DAY, STALL_DAY, free_port, smtp_env
from volume_monitor import cli, jobs, tracking
from volume_monitor.errors import AlertDeliveryError, ConfigError, ModelNotFoundError

DAY = dt.timedelta(days=1)


def read_summary(settings, day: dt.date) -> dict:
    return json.loads((settings.results_dir / str(day) / "summary.json").read_text())


def test_smtp_down_on_one_day_then_up_delivers_the_late_alert_once(trained_settings, smtp_server):
    port, inbox = smtp_server
    down = trained_settings(**smtp_env(free_port()))
    with pytest.raises(AlertDeliveryError, match="cannot send the alert"):
        jobs.deploy(down, STALL_DAY)
    folder = down.results_dir / str(STALL_DAY)
    assert (folder / jobs.PENDING_FILE).is_file()
    failed = read_summary(down, STALL_DAY)
    assert failed["notified"] is False and "cannot send the alert" in failed["delivery_error"]

    up = trained_settings(**smtp_env(port))
    jobs.deploy(up, STALL_DAY + DAY)
    late = [m for m in inbox.messages if m["Subject"].startswith("[volume-monitor] LATE ")]
    assert len(late) == 1
    assert late[0]["Subject"].startswith(f"[volume-monitor] LATE {STALL_DAY}: ")
    text = late[0].get_body(preferencelist=("plain",)).get_content()
    assert text.startswith("Sent late: this alert could not be delivered when it was raised")
    assert "mobile/" in text and "Android" in text, "the original content, the stalled series"
    delivered = read_summary(up, STALL_DAY)
    assert delivered["notified"] is True and delivered["late"] is True
    assert not (folder / jobs.PENDING_FILE).exists()

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
    assert (trained_settings().results_dir / str(STALL_DAY) / jobs.PENDING_FILE).is_file()


def test_backfill_pins_a_model_version_and_emails_only_with_notify(trained_settings, smtp_server):
    port, inbox = smtp_server
    settings = trained_settings(**smtp_env(port))
    pinned = jobs.train(settings, FIRST_DAY, LAST_DAY + DAY, overrides={"n_estimators": "50"})
    assert pinned.version == "2"

    quiet = jobs.backfill(settings, STALL_DAY - DAY, STALL_DAY + DAY)
    assert [r.summary["model_version"] for r in quiet] == ["1", "1", "1"]
    assert inbox.messages == [] and quiet[1].summary["alert"] is True
    assert (quiet[1].folder / jobs.EMAIL_FILE).is_file()

    loud = jobs.backfill(settings, STALL_DAY - DAY, STALL_DAY + DAY, notify=True, version="2")
    assert [r.summary["model_version"] for r in loud] == ["2", "2", "2"]
    alerting = [r.summary["date"] for r in loud if r.summary["alert"]]
    assert str(STALL_DAY) in alerting
    assert sorted(m["Subject"].split()[1].rstrip(":") for m in inbox.messages) == alerting
    client = tracking.client(settings)
    experiment = client.get_experiment_by_name(f"{settings.experiment}-scoring")
    history = client.search_runs([experiment.experiment_id], "tags.kind = 'backfill'")
    assert sorted(r.data.params["model_version"] for r in history) == ["1"] * 3 + ["2"] * 3
    with pytest.raises(ModelNotFoundError, match="'volume-monitor' has no version 9"):
        jobs.backfill(settings, STALL_DAY, STALL_DAY, version="9")


def test_backfill_refuses_an_empty_range_or_a_day_not_over(trained_settings):
    settings = trained_settings()
    with pytest.raises(ConfigError, match="is after --end"):
        jobs.backfill(settings, STALL_DAY, STALL_DAY - DAY)
    with pytest.raises(ConfigError, match="is not over yet"):
        jobs.backfill(settings, STALL_DAY, jobs.today(settings))
    assert not settings.results_dir.exists() or not any(settings.results_dir.glob("20*"))


def test_every_scoring_is_logged_to_the_scoring_experiment(trained_settings):
    settings = trained_settings()
    stalled = jobs.score_day(settings, STALL_DAY, dry_run=True)
    jobs.score_day(settings, MISSING_DAY, dry_run=True)
    client = tracking.client(settings)
    experiment = client.get_experiment_by_name(f"{settings.experiment}-scoring")
    runs = {r.data.params["date"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == [str(MISSING_DAY), str(STALL_DAY)]
    run = runs[str(STALL_DAY)]
    assert run.data.params["model_version"] == "1"
    assert run.data.metrics["anomalies"] == stalled.summary["anomalies"] > 0
    assert run.data.metrics["rows"] == stalled.summary["rows"]
    assert run.data.metrics["alert"] == 1.0 and run.data.metrics["notified"] == 0.0
    assert run.data.tags["kind"] == "dry run"
    assert runs[str(MISSING_DAY)].data.metrics["missing_day"] == 1.0


def test_progress_line_and_backfill_report():
    assert cli.progress_line(9, 30, LAST_DAY, width=10) == f"[###.......]  9/30 {LAST_DAY}"
    assert cli.progress_line(30, 30, LAST_DAY, width=10) == f"[##########] 30/30 {LAST_DAY}"
