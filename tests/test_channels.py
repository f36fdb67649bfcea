"""Slack, Teams, PagerDuty and a generic webhook, delivered by ``deploy.py`` processes to a
real HTTP receiver on 127.0.0.1, each payload checked against the shape its service
documents; routing by severity, resolved notices, silences, inhibition, and receivers that
fail."""

from __future__ import annotations

import datetime as dt
import json
import time

from conftest import LAST_DAY, MISSING_DAY, STALL_DAY, error_lines, free_port, run
from volume_monitor import state

BASE = "https://vm.example.com"
PATHS = {
    "slack": "/slack/T000/B000/s3cr3t-slack",
    "teams": "/teams-202/workflows/s3cr3t-teams",
    "webhook": "/hook/s3cr3t-hook",
    "pagerduty": "/pagerduty-202/v2/enqueue",
}
ROUTING_KEY = "R0UT1NGKEYs3cr3t0000000000000000"


def channel_env(receiver, **extra: str) -> dict[str, str]:
    return {
        "VM_SLACK_WEBHOOK_URL": receiver.url(PATHS["slack"]),
        "VM_TEAMS_WEBHOOK_URL": receiver.url(PATHS["teams"]),
        "VM_WEBHOOK_URL": receiver.url(PATHS["webhook"]),
        "VM_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "VM_PAGERDUTY_URL": receiver.url(PATHS["pagerduty"]),
        "VM_BASE_URL": BASE,
        "VM_HTTP_TIMEOUT": "2",
        **extra,
    }


def deploy(install, *args: str, **env: str):
    return run("deploy.py", *args, cwd=install, **env)


def received(receiver) -> dict[str, list]:
    return {name: receiver.answered(path) for name, path in PATHS.items()}


# --- the documented payload shapes ------------------------------------------------------


def check_slack(payload: dict) -> None:
    """Slack incoming webhook with Block Kit (api.slack.com/reference/block-kit/blocks)."""
    assert set(payload) <= {"text", "blocks"} and payload["text"].strip()
    assert 0 < len(payload["blocks"]) <= 50
    for block in payload["blocks"]:
        kind = block["type"]
        assert kind in {"header", "section", "context", "actions", "divider"}
        if kind == "header":
            assert block["text"]["type"] == "plain_text" and 0 < len(block["text"]["text"]) <= 150
        if kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert block["text"]["type"] == "mrkdwn" and len(block["text"]["text"]) <= 3000
            for item in block.get("fields", []):
                assert item["type"] == "mrkdwn" and len(item["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        if kind == "context":
            assert 0 < len(block["elements"]) <= 10
        if kind == "actions":
            for button in block["elements"]:
                assert button["type"] == "button" and button["url"].startswith("https://")
                assert len(button["text"]["text"]) <= 75


def check_teams(payload: dict) -> None:
    """A Teams workflow message carrying an Adaptive Card (adaptivecards.io, schema 1.4)."""
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    for element in card["body"]:
        assert element["type"] in {"TextBlock", "FactSet"}
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
        else:
            assert all(isinstance(f["title"], str) and isinstance(f["value"], str)
                       for f in element["facts"])  # fmt: skip
    for action in card["actions"]:
        assert action["type"] == "Action.OpenUrl" and action["url"].startswith("https://")


def check_pagerduty(event: dict) -> None:
    """PagerDuty Events API v2 (developer.pagerduty.com/docs/events-api-v2/trigger-events)."""
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] in {"trigger", "resolve"}
    assert 0 < len(event["dedup_key"]) <= 255
    if event["event_action"] == "trigger":
        payload = event["payload"]
        assert 0 < len(payload["summary"]) <= 1024 and payload["source"]
        assert payload["severity"] in {"critical", "error", "warning", "info"}
        for link in event.get("links", []):
            assert set(link) == {"href", "text"}
    else:
        assert set(event) == {"routing_key", "event_action", "dedup_key"}


def check_webhook(payload: dict) -> None:
    """Alertmanager's webhook shape (prometheus.io/docs/alerting/latest/configuration)."""
    for key in ("version", "groupKey", "status", "receiver", "groupLabels", "commonLabels",
                "commonAnnotations", "externalURL", "alerts", "truncatedAlerts"):  # fmt: skip
        assert key in payload, key
    assert payload["status"] in {"firing", "resolved"}
    for entry in payload["alerts"]:
        for key in ("status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
                    "fingerprint"):  # fmt: skip
            assert key in entry, key
        assert entry["labels"]["alertname"] == "VolumeAnomaly"


# --- tests ------------------------------------------------------------------------------


def test_a_fault_day_reaches_every_channel_once_with_monitor_series_severity_and_link(
    install, receiver
):
    env = channel_env(receiver)
    result = deploy(install, "--date", str(LAST_DAY), **env)
    assert result.returncode == 0, result.stderr

    got = received(receiver)
    assert {name: len(bodies) for name, bodies in got.items()} == dict.fromkeys(PATHS, 1)
    [slack], [teams], [hook], [event] = got["slack"], got["teams"], got["webhook"], got["pagerduty"]
    check_slack(slack), check_teams(teams), check_webhook(hook), check_pagerduty(event)
    summary = json.loads((install / "results/default" / str(LAST_DAY) / "summary.json").read_text())
    severity, link = summary["severity"], f"{BASE}/monitors/default/days/{LAST_DAY}"
    worst = hook["alerts"][0]["series"][0]

    assert worst["labels"]["channelid"] == "web" and worst["direction"] == "high"
    assert hook["alerts"][0]["labels"] == {
        "alertname": "VolumeAnomaly",
        "monitor": "default",
        "date": str(LAST_DAY),
        "severity": severity,
    }
    assert hook["alerts"][0]["generatorURL"] == link
    assert worst["link"].startswith(f"{BASE}/monitors/default/series?channelid=web&")
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == f"volume-monitor/default/{LAST_DAY}"
    assert event["payload"]["severity"] == severity and event["links"][0]["href"] == link
    assert event["payload"]["custom_details"]["series"][0]["channelid"] == "web"
    name = "/".join(worst["labels"].values())
    slack_text = json.dumps(slack)
    assert name in slack_text and f"Severity: {severity}." in slack_text and link in slack_text
    assert "Day total:" in slack_text
    card = teams["attachments"][0]["content"]
    [facts] = [element["facts"] for element in card["body"] if element["type"] == "FactSet"]
    assert {"title": "Severity", "value": severity} in facts
    assert "web/" in json.dumps(card["body"]) and card["actions"][0]["url"] == link
    assert summary["channels"] == dict.fromkeys(PATHS, "sent") and summary["notified"]
    headers = next(r.headers for r in receiver.requests if r.path == PATHS["webhook"])
    assert headers["Idempotency-Key"] == hook["groupKey"]

    again = deploy(install, "--date", str(LAST_DAY), **env)
    assert again.returncode == 0 and len(receiver.requests) == 4, "a rerun sends nothing new"

    forced = deploy(install, "--date", str(LAST_DAY), "--force", **env)
    assert forced.returncode == 0
    assert {name: len(bodies) for name, bodies in received(receiver).items()} == dict.fromkeys(
        PATHS, 2
    )


def test_the_next_normal_day_sends_one_resolved_notice_per_channel(install, receiver):
    env = channel_env(receiver)
    assert deploy(install, "--date", str(STALL_DAY), **env).returncode == 0
    assert all(len(bodies) == 1 for bodies in received(receiver).values())

    normal = STALL_DAY + dt.timedelta(days=1)
    result = deploy(install, "--date", str(normal), **env)
    assert result.returncode == 0, result.stderr
    summary = json.loads((install / "results/default" / str(normal) / "summary.json").read_text())
    assert summary["alert"] is False, "the day after the stall is normal in the demo"
    got = received(receiver)
    assert all(len(bodies) == 2 for bodies in got.values())
    resolve = got["pagerduty"][1]
    check_pagerduty(resolve)
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": f"volume-monitor/default/{STALL_DAY}"}  # fmt: skip
    check_slack(got["slack"][1]), check_teams(got["teams"][1]), check_webhook(got["webhook"][1])
    assert "resolved" in got["slack"][1]["text"] and str(STALL_DAY) in got["slack"][1]["text"]
    assert got["webhook"][1]["status"] == "resolved"
    assert got["webhook"][1]["alerts"][0]["fingerprint"] == f"default/{STALL_DAY}"

    again = deploy(install, "--date", str(normal), **env)
    assert again.returncode == 0 and all(len(b) == 2 for b in received(receiver).values())


def test_a_channel_takes_only_the_severities_it_is_routed(install, receiver):
    env = channel_env(receiver, VM_PAGERDUTY_MIN_SEVERITY="critical")
    result = deploy(install, "--date", str(LAST_DAY), **env)
    assert result.returncode == 0, result.stderr
    summary = json.loads((install / "results/default" / str(LAST_DAY) / "summary.json").read_text())
    assert summary["severity"] != "critical"
    got = received(receiver)
    assert got["pagerduty"] == [] and len(got["slack"]) == 1

    missing = deploy(install, "--date", str(MISSING_DAY), **env)
    assert missing.returncode == 0, missing.stderr
    [event] = received(receiver)["pagerduty"]
    assert event["payload"]["severity"] == "critical"
    assert event["dedup_key"] == f"volume-monitor/default/{MISSING_DAY}"


def test_a_missing_day_inhibits_its_series_lows(install, receiver):
    result = deploy(install, "--date", str(MISSING_DAY), **channel_env(receiver))
    assert result.returncode == 0, result.stderr
    [hook] = received(receiver)["webhook"]
    [entry] = hook["alerts"]
    assert entry["labels"]["severity"] == "critical"
    assert entry["series"] == [] and entry["moreSeries"] == 0
    assert "no data at all (missing day)" in entry["annotations"]["summary"]
    assert entry["total"]["count"] == 0 and entry["total"]["expected"] > 0


def test_a_silenced_series_is_never_sent(install, receiver):
    silence = run("volume_monitor/cli.py", "silence", "add", "--monitor", "default", "--match",
                  "channelid=web", "--until", "2099-01-01", "--reason", "load test",
                  cwd=install)  # fmt: skip
    assert silence.returncode == 0, silence.stderr
    result = deploy(install, "--date", str(LAST_DAY), **channel_env(receiver))
    assert result.returncode == 0, result.stderr
    sent = json.dumps([r.body for r in receiver.requests])
    assert '"channelid": "web"' not in sent and "web/" not in sent
    scores = (install / "results/default" / str(LAST_DAY) / "scores.csv").read_text()
    assert ",web," in scores and ",True\n" in scores, "still scored, shown as silenced"


def test_a_failing_receiver_keeps_its_message_and_the_next_run_sends_it_late(install, receiver):
    receiver.statuses[PATHS["slack"]] = 500
    receiver.silent.add(PATHS["teams"])
    down = f"http://127.0.0.1:{free_port()}{PATHS['webhook']}"  # nothing listens there
    began = time.perf_counter()
    result = deploy(install, "--date", str(LAST_DAY), **channel_env(receiver, VM_WEBHOOK_URL=down))
    took = time.perf_counter() - began

    assert result.returncode == 3, result.stderr
    assert took < 30, "the silent receiver costs at most VM_HTTP_TIMEOUT"
    [line] = error_lines(result.stderr)
    assert "slack (http://127.0.0.1:" in line and "answered 500" in line
    assert "teams (http://127.0.0.1:" in line and "no answer within 2 s" in line
    assert "webhook (http://127.0.0.1:" in line and "Connection refused" in line
    assert "s3cr3t" not in result.stderr and ROUTING_KEY not in result.stderr
    got = received(receiver)
    assert len(got["pagerduty"]) == 1 and got["slack"] == [] and got["webhook"] == []

    receiver.statuses.clear()
    receiver.silent.clear()
    retried = deploy(install, "--date", str(LAST_DAY), **channel_env(receiver))
    assert retried.returncode == 0, retried.stderr
    got = received(receiver)
    assert [len(got[n]) for n in ("slack", "teams", "webhook")] == [1, 1, 1], "each once, late"
    assert len(got["pagerduty"]) == 1, "the channel that delivered is not sent again"
    assert "LATE" in got["slack"][0]["text"] and "Sent late" in json.dumps(got["slack"][0])
    assert "Sent late" in json.dumps(got["teams"][0])
    assert "Connection refused" in got["webhook"][0]["alerts"][0]["late"]
    with state.open_store(f"sqlite:///{install / 'state/volume-monitor.db'}") as store:
        rows = {n: store.delivery("default", LAST_DAY, n, "alert") for n in PATHS}
    assert {n: (r.status, r.attempts) for n, r in rows.items()} == {
        "slack": ("sent", 2), "teams": ("sent", 2), "webhook": ("sent", 2),
        "pagerduty": ("sent", 1),
    }  # fmt: skip


def test_webhook_urls_and_the_routing_key_appear_nowhere(install, receiver):
    receiver.statuses[PATHS["teams"]] = 404
    env = channel_env(receiver, VM_LOG_LEVEL="DEBUG")
    result = deploy(install, "--date", str(LAST_DAY), **env)
    assert result.returncode == 3
    assert "teams (http://127.0.0.1:" in result.stderr and "answered 404" in result.stderr
    log = (install / "logs" / "volume-monitor.log").read_text()
    written = [result.stdout, result.stderr, log]
    written += [p.read_text(errors="replace") for p in (install / "results").rglob("*")
                if p.is_file() and p.suffix in {".json", ".txt", ".html", ".csv"}]  # fmt: skip
    with state.open_store(f"sqlite:///{install / 'state/volume-monitor.db'}") as store:
        rows = [store.delivery("default", LAST_DAY, name, "alert") for name in PATHS]
    written += [f"{row.payload} {row.last_error}" for row in rows]
    for text in written:
        assert "s3cr3t" not in text and ROUTING_KEY not in text
