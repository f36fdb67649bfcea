"""The APScheduler loop: trigger from VM_SCHEDULE/VM_TIMEZONE, job options, and a real firing
of the nightly job that writes results."""

from __future__ import annotations

import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import pytest

from conftest import settings_in
from volume_monitor import clock, scheduler
from volume_monitor.errors import ConfigError


def test_trigger_follows_schedule_and_timezone(tmp_path):
    settings = settings_in(tmp_path, VM_SCHEDULE="15 5 * * *", VM_TIMEZONE="Europe/Paris")
    built = scheduler.build_scheduler(settings, lambda: None, blocking=False)
    [job] = built.get_jobs()
    assert job.coalesce is True and job.max_instances == 1
    assert job.misfire_grace_time == scheduler.MISFIRE_GRACE_SECONDS
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    fire = job.trigger.get_next_fire_time(None, now)
    assert (fire.hour, fire.minute, fire.date()) == (5, 15, dt.date(2026, 3, 2))
    assert fire.utcoffset() == dt.timedelta(hours=1)


def test_invalid_cron_expression_is_a_config_error(tmp_path):
    settings = settings_in(tmp_path, VM_SCHEDULE="every night")
    with pytest.raises(ConfigError, match="VM_SCHEDULE is not a valid cron expression"):
        scheduler.build_scheduler(settings, lambda: None, blocking=False)


def test_nightly_job_fires_and_writes_results(trained_settings):
    settings = trained_settings()
    yesterday = clock.today(settings) - dt.timedelta(days=1)
    built = scheduler.build_scheduler(settings, lambda: scheduler.nightly(settings), blocking=False)
    built.start()
    try:
        soon = dt.datetime.now(ZoneInfo(settings.timezone)) + dt.timedelta(seconds=1)
        built.modify_job("nightly-score", next_run_time=soon)
        summary_file = settings.results_dir / "default" / str(yesterday) / "summary.json"
        deadline = time.monotonic() + 60
        while not summary_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        built.shutdown(wait=True)
    summary = json.loads(summary_file.read_text())
    assert summary["date"] == str(yesterday)
    # The demo history ends long before yesterday: the run reports a missing day.
    assert summary["alert"] is True and summary["reasons"][0].startswith("missing day")


def test_nightly_job_logs_known_errors_instead_of_raising(tmp_path, caplog):
    settings = settings_in(tmp_path)  # no MLflow store: nothing was trained
    assert scheduler.nightly(settings) == 1
    assert (
        "nightly run for" in caplog.text and "does not exist (train.py creates it)" in caplog.text
    )
