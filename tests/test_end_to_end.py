"""Train → promote → deploy on SQLite, PostgreSQL and MariaDB with the same sql/ file, scoring
the injected faults and delivering the alert to a real SMTP server."""

from __future__ import annotations

import datetime as dt
import json
import os

import pandas as pd
import pytest

from conftest import (
    FIRST_DAY,
    LAST_DAY,
    MISSING_DAY,
    STALL_DAY,
    database_url_for,
    settings_in,
    small_spec,
    smtp_env,
)
from volume_monitor import jobs, tracking
from volume_monitor.db import make_engine
from volume_monitor.demo import write_demo
from volume_monitor.errors import ConfigError


def read_scores(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "scores.csv", dtype={"channelid": str, "actioncode": str})


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_train_promote_deploy_flags_injected_faults(kind, tmp_path, smtp_server):
    port, inbox = smtp_server
    url = database_url_for(kind, tmp_path)
    write_demo(make_engine(url, must_exist=False, read_only=False), small_spec())
    settings = settings_in(tmp_path, VM_DATABASE_URL=url, **smtp_env(port))

    trained = jobs.train(settings, FIRST_DAY, LAST_DAY + dt.timedelta(days=1), promote=True)
    assert trained.version == "1"
    assert trained.days == HISTORY_DAYS_WITH_DATA
    assert tracking.load_model(settings).version == "1"

    duplicated = jobs.score_day(settings, LAST_DAY)
    scores = read_scores(duplicated.folder)
    flagged = scores[scores["is_anomaly"]]
    assert set(flagged["channelid"]) == {"web"}, "only the duplicated channel is anomalous"
    assert (flagged["direction"] == "high").all()
    biggest = scores.query("channelid == 'web' and actioncode == 'view' and os_family == 'Windows'")
    assert biggest["is_anomaly"].item() and biggest["cause"].item() == "duplicate"
    assert biggest["count"].item() > biggest["expected_high"].item()
    assert duplicated.summary.notified is True
    assert len(inbox.messages) == 1
    assert str(LAST_DAY) in inbox.messages[0]["Subject"]

    stalled = read_scores(jobs.score_day(settings, STALL_DAY).folder)
    android = stalled.query("channelid == 'mobile' and os_family == 'Android'")
    big_android = android.query("actioncode in ['view', 'search']")
    assert big_android["is_anomaly"].all()
    assert set(big_android["direction"]) <= {"low", "missing"}
    assert set(big_android["cause"]) <= {"stall", "missing_series"}
    assert not stalled.query("channelid == 'web'")["is_anomaly"].any()

    missing = jobs.score_day(settings, MISSING_DAY)
    summary = json.loads((missing.folder / "summary.json").read_text())
    assert summary["alert"] is True
    assert summary["reasons"][0].startswith("missing day")
    assert (read_scores(missing.folder)["count"] == 0).all()
    missing_mail = inbox.messages[-1]
    assert (
        missing_mail["Subject"] == f"[volume-monitor] {MISSING_DAY}: no data at all (missing day)"
    )
    for kind in ("plain", "html"):
        body = missing_mail.get_body(preferencelist=(kind,)).get_content()
        assert f"No events at all were recorded for {MISSING_DAY}" in body


# The demo history has one day without any event (the missing day), which training skips.
HISTORY_DAYS_WITH_DATA = (LAST_DAY - FIRST_DAY).days + 1 - 1


def test_results_folder_holds_contract_files(trained_settings):
    settings = trained_settings()
    result = jobs.score_day(settings, LAST_DAY, dry_run=True)
    names = {p.name for p in result.folder.iterdir()}
    assert {"scores.csv", "summary.json", "histogram.png", "email.txt"} <= names
    scores = read_scores(result.folder)
    assert list(scores.columns) == [
        "date",
        "channelid",
        "actioncode",
        "os_family",
        "count",
        "expected_low",
        "expected_high",
        "score",
        "is_anomaly",
        "direction",
        "cause",
        "silenced",
    ]
    assert (scores["date"] == str(LAST_DAY)).all()
    assert not scores["silenced"].any(), "no silence was set"
    summary = json.loads((result.folder / "summary.json").read_text())
    for key in (
        "date",
        "rows",
        "anomalies",
        "anomaly_share",
        "alert",
        "reasons",
        "model_uri",
        "model_version",
        "run_id",
        "notified",
    ):
        assert key in summary
    assert summary["rows"] == len(scores)
    assert summary["anomalies"] == int(scores["is_anomaly"].sum())
    assert summary["model_uri"] == "models:/volume-monitor@production"
    assert summary["model_version"] == "1"
    assert (result.folder / "histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ordinary_day_scores_without_crashing_and_few_anomalies(trained_settings):
    settings = trained_settings()
    ordinary = LAST_DAY - dt.timedelta(days=5)
    result = jobs.score_day(settings, ordinary, dry_run=True)
    assert result.summary.rows == len(read_scores(result.folder))
    assert result.summary.anomalies <= 2


def test_short_window_warns_and_a_score_cutoff_travels_with_the_model(trained_settings, caplog):
    settings = trained_settings()
    start, end = LAST_DAY - dt.timedelta(days=29), LAST_DAY + dt.timedelta(days=1)
    with caplog.at_level("WARNING", logger="volume_monitor.jobs"):
        result = jobs.train(settings, start, end, overrides={"score_cutoff": "-0.6"})
    assert "only 30 days of history" in caplog.text
    assert result.days == 30
    tracking.promote(settings, result.version)
    assert tracking.load_model(settings).detector.score_cutoff == -0.6
    with pytest.raises(ConfigError, match="score_cutoff expects a number or none, not 'low'"):
        jobs.train(settings, start, end, overrides={"score_cutoff": "low"})


def test_new_model_version_can_be_promoted_by_run_id(trained_settings):
    settings = trained_settings()
    retrained = jobs.train(
        settings, FIRST_DAY, LAST_DAY, overrides={"features": "seed", "n_estimators": "50"}
    )
    assert retrained.version == "2"
    assert tracking.load_model(settings).version == "1", "training alone does not promote"
    assert tracking.promote(settings, retrained.run_id) == "2"
    loaded = tracking.load_model(settings)
    assert loaded.version == "2"
    assert loaded.detector.features == "seed" and loaded.detector.n_estimators == 50


def test_scores_csv_bounds_are_whole_numbers_that_agree_with_direction(trained_settings):
    result = jobs.score_day(trained_settings(), STALL_DAY, dry_run=True)
    text = (result.folder / "scores.csv").read_text()
    assert "e+" not in text
    scores = read_scores(result.folder)
    assert scores["expected_low"].dtype.kind == "i" and scores["expected_high"].dtype.kind == "i"
    # A row with a direction is outside its range, or moved with its group (then flagged).
    high = scores[scores["direction"] == "high"]
    low = scores[scores["direction"].isin(["low", "missing"])]
    assert ((high["count"] > high["expected_high"]) | high["is_anomaly"]).all()
    assert ((low["count"] < low["expected_low"]) | low["is_anomaly"]).all()
    assert (low["count"] < low["expected_low"]).sum() >= 3
    inside = scores[scores["direction"].isna()]
    assert inside["count"].between(inside["expected_low"], inside["expected_high"]).all()
    flagged = scores[scores["is_anomaly"]]
    assert scores["is_anomaly"].head(len(flagged)).all(), "anomalies first"


def test_a_rescore_that_no_longer_alerts_leaves_no_file_of_the_earlier_verdict(trained_settings):
    settings = trained_settings()
    first = jobs.score_day(settings, LAST_DAY, dry_run=True)
    written = sorted(p.name for p in first.folder.iterdir())
    assert written == [
        "boundary.png", "email.html", "email.txt", "histogram.png", "scores.csv", "summary.json",
        "volume.png",
    ]  # fmt: skip
    lenient = jobs.train(
        settings, FIRST_DAY, LAST_DAY + dt.timedelta(days=1),
        overrides={"band": "1000", "min_change": "100000", "group_threshold": "0"},
    )  # fmt: skip
    tracking.promote(settings, lenient.version)

    again = jobs.score_day(settings, LAST_DAY, dry_run=True)
    assert again.folder == first.folder
    assert again.summary.alert is False and again.summary.model_version == lenient.version
    assert sorted(p.name for p in again.folder.iterdir()) == [
        "boundary.png", "histogram.png", "scores.csv", "summary.json"
    ]  # fmt: skip
    assert not [p for p in again.folder.parent.iterdir() if p.name.startswith(".")
                and p.name != ".volume-monitor.lock"], "no temporary folder is left"  # fmt: skip


def test_training_and_loading_leave_the_process_environment_and_folder_alone(
    trained_settings, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = dict(os.environ)
    settings = trained_settings()
    trained = jobs.train(settings, FIRST_DAY, LAST_DAY + dt.timedelta(days=1))
    tracking.promote(settings, trained.version)
    assert tracking.load_model(settings).version == trained.version == "2"
    assert dict(os.environ) == before
    # The configured stores and the user-agent cache; no store of MLflow's own default.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "mlruns", "results", "state"]
    # ... and what training found in its data, beside the results.
    model_files = tmp_path / "results" / "default" / "models" / f"v{trained.version}"
    assert sorted(p.name for p in model_files.iterdir()) == [
        "alert_levels.json", "boundary.png", "describe.csv", "deviations.png", "histogram.png"
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "mlruns").iterdir()) == ["artifacts", "mlflow.db"]
