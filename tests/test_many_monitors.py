"""Many monitors in one install, as cron runs them: two monitors of different shapes on
different databases (activity on a SQLite file, orders on PostgreSQL or MariaDB), trained and
scored by one process each, one email for the night, a broken monitor that stops only itself,
the history the state store keeps, and two processes writing the store at once."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import (
    FIRST_DAY,
    HISTORY_DAYS,
    LAST_DAY,
    ROOT,
    clean_environment,
    database_url_for,
    error_lines,
    run,
    small_spec,
    smtp_env,
)
from volume_monitor import state
from volume_monitor.db import make_engine
from volume_monitor.demo import OrdersSpec, default_order_faults, write_demo, write_orders_demo

MONITORS = """\
monitors:
  activity:
    database_url: sqlite:///data/events.db
    query: sql/daily_volume.sql
    dimensions: [channelid, actioncode, os_family]
    owner: web team
  orders:
    database_url: ${ORDERS_URL}
    query: sql/orders_daily.sql
    dimensions: [country, payment_method]
    owner: payments team
    runbook: https://runbooks.example.com/orders
"""
END = str(LAST_DAY + dt.timedelta(days=1))
DE_PAYPAL = {"country": "DE", "payment_method": "paypal"}


def orders_spec() -> OrdersSpec:
    """Orders over the same 100 days; DE/paypal stops on the last day."""
    return OrdersSpec(
        LAST_DAY, days=HISTORY_DAYS, orders_per_day=800, seed=5,
        faults=default_order_faults(LAST_DAY),
    )  # fmt: skip


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def trained_install(request, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An install with both monitors trained and promoted by one ``train.py``; yields the
    folder and the environment that names the orders database."""
    folder = tmp_path_factory.mktemp(f"monitors-{request.param}")
    (folder / "data").mkdir()
    shutil.copytree(ROOT / "sql", folder / "sql")
    (folder / "monitors.yml").write_text(MONITORS)
    events = make_engine(f"sqlite:///{folder / 'data' / 'events.db'}", False, read_only=False)
    write_demo(events, small_spec())
    orders_url = database_url_for(request.param, folder)
    orders = make_engine(orders_url, must_exist=False, read_only=False)
    write_orders_demo(orders, orders_spec(), replace=True)
    env = {"ORDERS_URL": orders_url}
    trained = run(
        "train.py", "--start", str(FIRST_DAY), "--end", END, "--promote", cwd=folder, **env
    )
    assert trained.returncode == 0, trained.stderr
    assert "model: volume-monitor-activity version 1, alias @production" in trained.stdout
    assert "model: volume-monitor-orders version 1, alias @production" in trained.stdout
    return folder, env


@pytest.fixture
def install(trained_install, tmp_path) -> tuple[Path, dict[str, str]]:
    folder, env = trained_install
    copy = tmp_path / "install"
    shutil.copytree(folder, copy)
    return copy, env


def scores(folder: Path, monitor: str, day: dt.date) -> pd.DataFrame:
    return pd.read_csv(folder / "results" / monitor / str(day) / "scores.csv")


def flagged(folder: Path, monitor: str, day: dt.date) -> pd.DataFrame:
    table = pd.read_csv(folder / "results" / monitor / str(day) / "scores.csv", dtype=str)
    return table[table["is_anomaly"] == "True"]


def test_one_deploy_scores_both_monitors_and_sends_one_email(install, smtp_server):
    folder, env = install
    port, inbox = smtp_server
    result = run("deploy.py", "--date", str(LAST_DAY), cwd=folder, **env, **smtp_env(port))
    assert result.returncode == 0, result.stderr

    activity = flagged(folder, "activity", LAST_DAY)
    assert set(activity["channelid"]) == {"web"}, "the duplicated load of channel web"
    orders = flagged(folder, "orders", LAST_DAY)
    assert orders[["country", "payment_method"]].values.tolist() == [["DE", "paypal"]]
    assert orders["cause"].tolist() == ["missing_series"]
    header = (folder / "results" / "orders" / str(LAST_DAY) / "scores.csv").read_text()
    assert header.splitlines()[0] == (
        "date,country,payment_method,count,expected_low,expected_high,score,is_anomaly,"
        "direction,cause,silenced"
    )
    assert f"activity {LAST_DAY}: " in result.stdout and f"orders {LAST_DAY}: " in result.stdout

    [message] = inbox.messages
    assert message["Subject"] == (
        f"[volume-monitor] {LAST_DAY}: 2 monitors alerting (activity, orders)"
    )
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert text.index("== activity: ") < text.index("== orders: ")
    assert "- DE/paypal: 0 events, expected " in text
    assert (
        "Owner: payments team." in text and "Runbook: https://runbooks.example.com/orders" in text
    )
    assert "channelid=web: " in text
    images = [part.get_filename() for part in message.walk() if part.get_filename()]
    assert images == ["histogram.png", "volume.png"] * 2
    for monitor in ("activity", "orders"):
        summary = json.loads(
            (folder / "results" / monitor / str(LAST_DAY) / "summary.json").read_text()
        )
        assert summary["monitor"] == monitor and summary["notified"] is True

    again = run("deploy.py", "--date", str(LAST_DAY), cwd=folder, **env, **smtp_env(port))
    assert again.returncode == 0 and len(inbox.messages) == 1, "each alert is sent once"


def test_monitors_routed_to_the_same_channels_share_one_message_each(install, receiver):
    folder, env = install
    routes = (
        "defaults:\n  notify:\n"
        '    slack: {webhook_url: "${SLACK_URL}"}\n'
        '    webhook: {url: "${HOOK_URL}"}\n'
        '    pagerduty: {routing_key: "${PD_KEY}", url: "${PD_URL}", min_severity: error}\n'
    )
    (folder / "monitors.yml").write_text(routes + MONITORS)
    env = {**env, "SLACK_URL": receiver.url("/slack"), "HOOK_URL": receiver.url("/hook"),
           "PD_KEY": "k" * 32, "PD_URL": receiver.url("/pd-202")}  # fmt: skip
    result = run("deploy.py", "--date", str(LAST_DAY), cwd=folder, **env)
    assert result.returncode == 0, result.stderr

    severity = {
        monitor: json.loads(
            (folder / "results" / monitor / str(LAST_DAY) / "summary.json").read_text()
        )["severity"]
        for monitor in ("activity", "orders")
    }
    assert severity == {"activity": "error", "orders": "warning"}
    [slack] = receiver.answered("/slack")
    headers = [b["text"]["text"] for b in slack["blocks"] if b["type"] == "header"]
    assert headers == [f"[volume-monitor] activity {LAST_DAY}: " + headers[0].split(": ", 1)[1],
                       f"[volume-monitor] orders {LAST_DAY}: 1 anomalous series, worst "
                       "DE/paypal missing"]  # fmt: skip
    [hook] = receiver.answered("/hook")
    assert [a["labels"]["monitor"] for a in hook["alerts"]] == ["activity", "orders"]
    assert hook["alerts"][1]["series"][0]["labels"] == DE_PAYPAL
    [event] = receiver.answered("/pd-202")
    assert event["dedup_key"] == f"volume-monitor/activity/{LAST_DAY}", "orders is a warning"


def test_the_first_alert_after_training_has_history(install):
    folder, env = install
    result = run("deploy.py", "--date", str(LAST_DAY), "--monitor", "orders", cwd=folder, **env)
    assert result.returncode == 0, result.stderr
    assert (folder / "results" / "orders" / str(LAST_DAY) / "volume.png").stat().st_size > 10_000
    scored = [p.name for p in (folder / "results" / "activity").iterdir() if p.name != "models"]
    assert scored == [], "--monitor orders scores only orders"

    shown = run(
        "volume_monitor/cli.py", "history", "--monitor", "orders", "--series", "country=DE",
        "--series", "payment_method=paypal", "--days", "60", "--end", str(LAST_DAY),
        "--format", "csv", cwd=folder, **env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert len(rows) >= 30
    assert {(r["country"], r["payment_method"]) for r in rows} == {("DE", "paypal")}
    last, before = rows[-1], rows[:-1]
    assert (last["date"], last["count"], last["source"]) == (str(LAST_DAY), "0", "scored")
    assert last["is_anomaly"] == "True"
    assert {r["source"] for r in before} == {"train"}
    assert all(int(r["count"]) > 0 and float(r["expected_high"]) > 0 for r in before)

    totals = run(
        "volume_monitor/cli.py", "history", "--monitor", "orders", "--days", "3", "--end",
        str(LAST_DAY), cwd=folder, **env,
    )  # fmt: skip
    lines = totals.stdout.splitlines()
    assert lines[0].split() == [
        "date", "count", "expected_low", "expected_high", "anomalies", "alert", "source"
    ]  # fmt: skip
    assert len(lines) == 4 and lines[-1].split()[-2:] == ["True", "scored"]


def test_a_broken_monitor_stops_only_itself(install, smtp_server):
    folder, _ = install
    port, inbox = smtp_server
    broken = {"ORDERS_URL": "postgresql+psycopg2://shop:S3cret-pw@127.0.0.1:1/shop"}
    result = run("deploy.py", "--date", str(LAST_DAY), cwd=folder, **broken, **smtp_env(port))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "monitor 'orders': cannot reach the database postgresql+psycopg2://shop:***@" in line
    assert "S3cret-pw" not in result.stderr + result.stdout
    assert (folder / "results" / "activity" / str(LAST_DAY) / "summary.json").is_file()
    assert not (folder / "results" / "orders" / str(LAST_DAY)).exists()
    [message] = inbox.messages
    assert message["Subject"].startswith(f"[volume-monitor] activity {LAST_DAY}: ")

    alone = run("deploy.py", "--monitor", "orders", cwd=folder, **broken)
    assert alone.returncode == 1
    [line] = error_lines(alone.stderr)
    assert "error: monitor 'orders': cannot reach the database" in line


def test_a_backfill_and_a_nightly_run_write_the_store_at_once(install):
    folder, env = install
    days = 12
    start = LAST_DAY - dt.timedelta(days=days)
    backfill = spawn(folder, env, "--monitor", "activity", "--start", str(start), "--end",
                     str(LAST_DAY - dt.timedelta(days=1)))  # fmt: skip
    nightlies = [str(LAST_DAY - dt.timedelta(days=n)) for n in range(3)]
    for day in nightlies:
        nightly = spawn(folder, env, "--monitor", "orders", "--date", day)
        assert nightly.wait(timeout=300) == 0, nightly.stderr.read()
    assert backfill.wait(timeout=300) == 0, backfill.stderr.read()

    url = f"sqlite:///{folder / 'state' / 'volume-monitor.db'}"
    with state.open_store(url) as store:
        activity_days = store.days("activity", start, LAST_DAY)
        orders_days = store.days("orders", start, LAST_DAY)
        activity = store.history("activity", start, LAST_DAY - dt.timedelta(days=1))
        orders = store.history("orders", LAST_DAY - dt.timedelta(days=2), LAST_DAY)
    assert [d.kind for d in activity_days] == ["backfill"] * days
    assert sorted(str(d.date) for d in orders_days) == sorted(nightlies)
    assert set(activity["source"]) == {"scored"} and len(activity) == days * 52
    assert set(orders["source"]) == {"scored"} and len(orders) == 3 * 17
    for day in nightlies:
        on_disk = scores(folder, "orders", dt.date.fromisoformat(day))
        stored = orders[orders["date"] == pd.Timestamp(day)]
        assert stored["count"].sum() == on_disk["count"].sum()


def spawn(folder: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "deploy.py"), *args, "--dry-run"],
        cwd=folder, env={**clean_environment(), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_silenced_series_is_scored_and_shown_but_never_sent(install):
    """Silence orders' DE/paypal (its stall is the night's only fault): the day is scored,
    ``scores.csv`` marks the series silenced, nothing alerts; expired, the next score alerts."""
    folder, env = install

    def cli(*args: str) -> subprocess.CompletedProcess:
        return run("volume_monitor/cli.py", "silence", *args, cwd=folder, **env)

    until = str(dt.date.today() + dt.timedelta(days=30))
    added = cli(
        "add", "--monitor", "orders", "--match", "country=DE", "--match", "payment_method=paypal",
        "--until", until, "--reason", "paypal DE migration, tracked in PAY-12",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(
        "silence #1 added: #1  orders  country=DE, payment_method=paypal"
    )

    deploy = ["deploy.py", "--date", str(LAST_DAY), "--monitor", "orders", "--dry-run"]
    assert run(*deploy, cwd=folder, **env).returncode == 0
    day = folder / "results" / "orders" / str(LAST_DAY)
    rows = pd.read_csv(day / "scores.csv", dtype=str)
    de_paypal = rows[(rows["country"] == "DE") & (rows["payment_method"] == "paypal")]
    assert de_paypal[["is_anomaly", "silenced", "direction"]].values.tolist() == [
        ["True", "True", "missing"]
    ]
    assert (rows.loc[rows["silenced"] == "False", "is_anomaly"] == "False").all()
    summary = json.loads((day / "summary.json").read_text())
    assert (summary["alert"], summary["anomalies"], summary["silenced"]) == (False, 0, 1)
    assert not (day / "email.txt").exists()

    listed = cli("list", "--monitor", "orders")
    assert "#1  orders  country=DE, payment_method=paypal  until" in listed.stdout
    assert "active  paypal DE migration, tracked in PAY-12" in listed.stdout
    assert cli("expire", "1").stdout == "silence #1 expired\n"
    assert cli("list").stdout == "no silences\n"
    assert "expired" in cli("list", "--all").stdout

    assert run(*deploy, cwd=folder, **env).returncode == 0
    summary = json.loads((day / "summary.json").read_text())
    assert (summary["alert"], summary["silenced"]) == (True, 0)
    assert "DE/paypal" in (day / "email.txt").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "--monitor", "orders", "--match", "colour=red", "--until", "2099-01-01",
          "--reason", "x"], "monitor 'orders' has no dimension colour"),
        (["add", "--monitor", "orders", "--until", "2020-01-01", "--reason", "x"],
         "--until 2020-01-01 is already past"),
        (["add", "--monitor", "orders", "--until", "2099-01-01", "--reason", " "],
         "--reason must say why"),
        (["add", "--monitor", "nope", "--until", "2099-01-01", "--reason", "x"], "nope"),
        (["expire", "99"], "there is no active silence #99"),
    ],
)  # fmt: skip
def test_a_bad_silence_is_one_line_and_exit_1(install, args, message):
    folder, env = install
    result = run("volume_monitor/cli.py", "silence", *args, cwd=folder, **env)
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
