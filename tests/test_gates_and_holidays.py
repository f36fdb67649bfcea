"""A monitor's gates and holidays, through the scripts cron runs: which anomalies a gate holds
back, and the holidays a training run learns."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd

from conftest import FIRST_DAY, LAST_DAY, run


def deploy_with(folder, **env) -> tuple[dict, pd.DataFrame]:
    """A dry run of ``LAST_DAY`` (the demo's duplicated load of channel web) with ``env``; its
    summary and scores."""
    done = run("deploy.py", "--date", str(LAST_DAY), "--dry-run", cwd=folder, **env)
    assert done.returncode == 0, done.stderr
    day = folder / "results" / "default" / str(LAST_DAY)
    summary = json.loads((day / "summary.json").read_text())
    return summary, pd.read_csv(day / "scores.csv")


def test_gates_hold_back_what_the_monitor_does_not_page_for(trained_workdir):
    summary, scores = deploy_with(trained_workdir)
    assert summary["alert"] and set(scores.loc[scores["is_anomaly"], "channelid"]) == {"web"}
    doubled = scores[scores["is_anomaly"]]
    summary, scores = deploy_with(trained_workdir, VM_ALERT_DIRECTION="low")
    assert not summary["alert"] and summary["anomalies"] == 0
    assert not scores["is_anomaly"].any()
    held = scores.merge(doubled[["channelid", "actioncode", "os_family"]])
    assert (held["direction"] == "high").all() and (held["cause"].isna()).all()
    _, scores = deploy_with(trained_workdir, VM_ALERT_MIN_CHANGE_PCT="150")
    kept = scores[scores["is_anomaly"]]
    assert 0 < len(kept) < len(doubled) / 3, "a doubled load is +100%: few pass +150%"
    assert (kept["direction"] == "high").all()
    # Each kept series rose by less than its count: a gate of more events holds them all back.
    most = int(kept["count"].max())
    summary, _ = deploy_with(
        trained_workdir, VM_ALERT_MIN_CHANGE_PCT="150", VM_ALERT_MIN_CHANGE=str(most)
    )
    assert not summary["alert"], f"and none of those rose by {most} events"
    summary, scores = deploy_with(trained_workdir, VM_ALERT_MIN_CHANGE_PCT="60")
    assert summary["alert"] and set(scores.loc[scores["is_anomaly"], "channelid"]) == {"web"}


def test_training_learns_the_monitors_holidays_and_refuses_an_unknown_country(workdir):
    from mlflow.tracking import MlflowClient

    end = str(LAST_DAY + dt.timedelta(days=1))
    refused = run("train.py", "--start", str(FIRST_DAY), "--end", end, cwd=workdir,
                  VM_HOLIDAYS="Atlantis")  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith("volume-monitor: error: VM_HOLIDAYS: holidays: 'ATLANTIS' is not")
    trained = run("train.py", "--start", str(FIRST_DAY), "--end", end, cwd=workdir,
                  VM_HOLIDAYS="US")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    [run_] = client.search_runs([client.get_experiment_by_name("volume-monitor").experiment_id])
    assert run_.data.params["holidays"] == "US"
    assert run_.data.params["clean"] == "True"
