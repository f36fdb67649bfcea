"""Feedback through the command line, on a real state store (a SQLite file, or a PostgreSQL
schema of its own): what each verdict does to the next training and to scoring."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from conftest import FIRST_DAY, LAST_DAY, postgresql_schema, run

MOBILE_DUPLICATE = LAST_DAY - dt.timedelta(days=60)  # the demo's earlier duplicated load
MISSING_DAY = LAST_DAY - dt.timedelta(days=30)
END = str(LAST_DAY + dt.timedelta(days=1))


@pytest.fixture(params=["sqlite", "postgresql"])
def state_env(request, workdir) -> dict[str, str]:
    """The install's state store: its SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield {}
        return
    with postgresql_schema("vm_feedback") as url:
        yield {"VM_STATE_URL": url}


def vm(folder: Path, env: dict[str, str], *args: str):
    done = run("volume_monitor/cli.py", *args, cwd=folder, **env)
    assert done.returncode == 0, done.stderr
    return done


def train(folder: Path, env: dict[str, str], end: str = END) -> dict[str, float]:
    """Train and promote on ``FIRST_DAY`` up to ``end``; the run's metrics, with its
    ``feedback.json`` as the key ``used``."""
    from mlflow.tracking import MlflowClient

    done = run("train.py", "--start", str(FIRST_DAY), "--end", end, "--promote", cwd=folder, **env)
    assert done.returncode == 0, done.stderr
    client = MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("volume-monitor").experiment_id
    [latest, *_] = client.search_runs([experiment], order_by=["attributes.start_time DESC"])
    used = client.download_artifacts(latest.info.run_id, "feedback.json", str(folder))
    return {**latest.data.metrics, "used": json.loads(Path(used).read_text())}


def scored(folder: Path, day: dt.date) -> tuple[dict, pd.DataFrame]:
    where = folder / "results" / "default" / str(day)
    return json.loads((where / "summary.json").read_text()), pd.read_csv(where / "scores.csv")


def test_an_alert_stays_out_of_training_unless_it_was_a_false_alarm(workdir, state_env):
    first = train(workdir, state_env, end=str(MOBILE_DUPLICATE))
    assert first["feedback_used"] == 0 and "alerts_judged" in first
    done = run("deploy.py", "--start", str(MOBILE_DUPLICATE), "--end", str(MOBILE_DUPLICATE),
               cwd=workdir, **state_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary, scores = scored(workdir, MOBILE_DUPLICATE)
    assert summary["alert"] and set(scores.loc[scores["is_anomaly"], "channelid"]) == {"mobile"}
    alerted = int(scores["is_anomaly"].sum())

    unjudged = train(workdir, state_env)
    assert unjudged["left_out_alerted"] == alerted and "live_precision" not in unjudged

    said = vm(workdir, state_env, "feedback", "normal", "--date", str(MOBILE_DUPLICATE),
              "--match", "channelid=mobile", "--note", "a partner's replay")  # fmt: skip
    assert "the day stays in training and counts as a false alarm" in said.stdout
    normal = train(workdir, state_env)
    assert "left_out_alerted" not in normal, "a false alarm is trained on"
    assert (normal["feedback_used"], normal["alerts_judged"], normal["live_precision"]) == (
        1, 1, 0.0
    )  # fmt: skip
    assert normal["used"][0]["verdict"] == "normal"
    assert normal["used"][0]["matchers"] == {"channelid": "mobile"}

    vm(workdir, state_env, "feedback", "incident", "--date", str(MOBILE_DUPLICATE),
       "--match", "channelid=mobile")  # fmt: skip
    incident = train(workdir, state_env)
    assert incident["left_out_incident"] == 12, "every mobile series that day"
    assert incident["live_precision"] == 1.0, "the day's alert is confirmed"
    runs = vm(workdir, state_env, "runs").stdout.splitlines()
    assert "metrics.live_precision" in runs[0] and "metrics.alerts_judged" in runs[0]
    listed = vm(workdir, state_env, "feedback", "list").stdout.splitlines()
    assert [line.split("  ")[3] for line in listed] == ["normal", "incident"]
    assert listed[0].endswith("a partner's replay")


def test_an_expected_event_is_scored_not_alerted_and_left_out_of_training(workdir, state_env):
    train(workdir, state_env)
    vm(workdir, state_env, "feedback", "expected", "--date", str(LAST_DAY),
       "--match", "channelid=web", "--note", "load test")  # fmt: skip
    vm(workdir, state_env, "feedback", "expected", "--date", str(MISSING_DAY),
       "--note", "maintenance")  # fmt: skip
    for day in (LAST_DAY, MISSING_DAY):
        done = run("deploy.py", "--date", str(day), cwd=workdir, **state_env)
        assert done.returncode == 0, done.stderr
    summary, scores = scored(workdir, LAST_DAY)
    assert not summary["alert"] and summary["anomalies"] == 0
    web = scores["channelid"] == "web"
    assert (scores.loc[web, "cause"] == "expected").sum() >= 8 and not scores["is_anomaly"].any()
    summary, _ = scored(workdir, MISSING_DAY)
    assert summary["missing_day"] and not summary["alert"]
    assert summary["reasons"][-1] == "alert suppressed: known day 'expected: maintenance'"
    again = train(workdir, state_env)
    assert again["left_out_expected"] == 32, "the web series of the load test"


def test_a_new_level_restarts_the_baseline_of_its_series(workdir, state_env):
    shift = LAST_DAY - dt.timedelta(days=20)
    with sqlite3.connect(workdir / "data" / "demo.db") as connection:  # api doubles for good
        connection.execute(
            "INSERT INTO activityhistory (created_at, channelid, actioncode, user_agent) "
            "SELECT created_at, channelid, actioncode, user_agent FROM activityhistory "
            "WHERE channelid = 'api' AND created_at >= ?",
            (str(shift),),
        )
    train(workdir, state_env, end=str(LAST_DAY))
    done = run("deploy.py", "--date", str(LAST_DAY), "--dry-run", cwd=workdir, **state_env)
    assert done.returncode == 0, done.stderr
    _, before = scored(workdir, LAST_DAY)
    api = before["channelid"] == "api"
    assert before.loc[api, "is_anomaly"].any(), "the doubled api volume, against the old level"

    vm(workdir, state_env, "feedback", "new-level", "--date", str(shift),
       "--match", "channelid=api", "--note", "a second partner")  # fmt: skip
    relearnt = train(workdir, state_env, end=str(LAST_DAY))
    days_before = (shift - FIRST_DAY).days - 1  # the missing day has no rows
    assert relearnt["left_out_new-level"] == 8 * days_before, "8 api series before the shift"
    done = run("deploy.py", "--date", str(LAST_DAY), "--dry-run", cwd=workdir, **state_env)
    assert done.returncode == 0, done.stderr
    _, after = scored(workdir, LAST_DAY)
    assert not after.loc[after["channelid"] == "api", "is_anomaly"].any()
    assert set(after.loc[after["is_anomaly"], "channelid"]) == {"web"}, "the duplicated load"


def test_a_verdict_on_an_unknown_dimension_or_a_day_to_come_is_one_line(workdir, state_env):
    train(workdir, state_env)
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    for args, message in [
        (("incident", "--date", str(LAST_DAY), "--match", "colour=red"),
         "monitor 'default' has no dimension colour; its dimensions: channelid, actioncode"),
        (("normal", "--date", str(tomorrow)),
         f"--date {tomorrow} is still to come: only 'expected' can be said ahead"),
        (("incident",), "--date is needed: the day the verdict is about"),
    ]:  # fmt: skip
        done = run("volume_monitor/cli.py", "feedback", *args, cwd=workdir, **state_env)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        [line] = done.stderr.splitlines()
        assert f"error: {message}" in line, line
    assert vm(workdir, state_env, "feedback", "list").stdout == "no feedback\n"


def test_verdicts_and_past_alerts_decide_the_training_rows():
    from volume_monitor import feedback
    from volume_monitor.state import Feedback

    days = pd.to_datetime(["2026-06-01", "2026-06-02", "2026-06-03"])
    frame = pd.DataFrame(
        [(d, c, a) for d in days for c in ("web", "api") for a in ("view", "login")],
        columns=["date", "channelid", "actioncode"],
    ).set_index("date")
    d1, d2, d3 = (d.date() for d in days)
    verdicts = [
        Feedback("m", d1, "normal", {"channelid": "web"}),
        Feedback("m", d2, "incident", {"channelid": "api", "actioncode": "view"}),
        Feedback("m", d3, "new-level", {"channelid": "api", "actioncode": "login"}),
        Feedback("m", d3, "expected", {"channelid": "nowhere"}),  # matches nothing: unused
    ]
    alerted = pd.DataFrame(
        [(days[0], "web", "view"), (days[0], "api", "view"), (days[2], "web", "login")],
        columns=["date", "channelid", "actioncode"],
    )
    found = feedback.for_training(frame, ["channelid", "actioncode"], verdicts, alerted)
    left = frame.reset_index()[~found.keep]
    assert sorted(map(tuple, left.astype(str).to_numpy())) == [
        ("2026-06-01", "api", "login"),  # new-level on day 3: earlier days go
        ("2026-06-01", "api", "view"),  # alerted, nobody judged
        ("2026-06-02", "api", "login"),
        ("2026-06-02", "api", "view"),  # the incident
        ("2026-06-03", "web", "login"),  # alerted
    ]
    assert found.left_out == {"incident": 1, "new-level": 2, "alerted": 2}
    assert frame.reset_index()[found.normal]["channelid"].tolist() == ["web", "web"]
    assert [v.verdict for v in found.used] == ["normal", "incident", "new-level"]
    unclean = feedback.for_training(frame, ["channelid", "actioncode"], verdicts, alerted, False)
    assert unclean.left_out == {"incident": 1, "new-level": 2}


def test_live_precision_is_confirmed_over_judged_alerted_days():
    from volume_monitor import feedback
    from volume_monitor.state import Feedback

    d1, d2, d3, d4 = (dt.date(2026, 6, d) for d in (1, 2, 3, 4))
    verdicts = [
        Feedback("m", d1, "normal"),  # a false alarm
        Feedback("m", d2, "normal", {"channelid": "web"}),
        Feedback("m", d2, "incident", {"channelid": "api"}),  # the day's alert was right
        Feedback("m", d3, "expected"),
        Feedback("m", d4, "incident"),  # d4 did not alert: not an alert judged
    ]
    found = feedback.live_precision(verdicts, {d1, d2, d3})
    assert (found.judged, found.confirmed, found.value) == (3, 2, 2 / 3)
    assert feedback.live_precision([], {d1}).value is None


def test_the_command_line_offers_the_verdicts_the_store_keeps():
    from volume_monitor import cli
    from volume_monitor.state.records import VERDICTS

    assert cli.VERDICTS == VERDICTS
