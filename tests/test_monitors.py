"""The monitors file: defaults, ${VAR}, paths, and one line for every kind of mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, run
from volume_monitor.config import DEFAULT_DIMENSIONS, load_settings
from volume_monitor.errors import ConfigError

GOOD = """\
defaults:
  database_url: sqlite:///data/events.db
  alert_min_anomalies: 2
monitors:
  activity:
    query: sql/daily_volume.sql
    dimensions: [channelid, actioncode, os_family]
    owner: web team
  orders:
    database_url: postgresql+psycopg2://shop:${ORDERS_PASSWORD}@db:5432/shop
    query: sql/orders_daily.sql
    alert_min_anomalies: 1
    alert_share: 0.2
    runbook: https://runbooks.example.com/orders
    recipients: payments@example.com, oncall@example.com
"""


def settings_with(tmp_path: Path, text: str, **environ: str):
    path = tmp_path / "monitors.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_settings(
        env_file=tmp_path / "absent.env", environ={"VM_MONITORS": str(path), **environ}
    )


def error_of(tmp_path: Path, text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, text, **environ)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_monitors_file_declares_each_monitor_with_defaults_applied(tmp_path):
    settings = settings_with(tmp_path, GOOD, ORDERS_PASSWORD="pw-from-env", ALERT_TO="a@b.c")
    assert [m.name for m in settings.monitors] == ["activity", "orders"]
    activity, orders = settings.monitors
    assert activity.database_url == f"sqlite:///{tmp_path / 'data' / 'events.db'}"
    assert activity.query_path == tmp_path / "sql" / "daily_volume.sql"
    assert activity.dimensions == DEFAULT_DIMENSIONS
    assert (activity.model_name, activity.experiment) == ("volume-monitor-activity",) * 2
    assert activity.alert_min_anomalies == 2, "from defaults"
    assert activity.recipients == ("a@b.c",), "ALERT_TO is every monitor's default"
    assert activity.owner == "web team" and activity.runbook == ""
    assert orders.database_url == "postgresql+psycopg2://shop:pw-from-env@db:5432/shop"
    assert orders.dimensions is None, "every column but date and count"
    assert orders.alert_min_anomalies == 1 and orders.alert_share == 0.2
    assert orders.recipients == ("payments@example.com", "oncall@example.com")
    assert "pw-from-env" in settings.secrets
    assert "pw-from-env" not in repr(settings)


def test_variables_come_from_the_env_file_too(tmp_path):
    (tmp_path / ".env").write_text("ORDERS_PASSWORD=from-dotenv\n", encoding="utf-8")
    path = tmp_path / "monitors.yml"
    path.write_text(GOOD, encoding="utf-8")
    settings = load_settings(env_file=tmp_path / ".env", environ={"VM_MONITORS": str(path)})
    assert ":from-dotenv@" in settings.monitor("orders").database_url


def test_without_a_monitors_file_the_env_settings_are_the_default_monitor(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env_file=tmp_path / "absent.env", environ={})
    (monitor,) = settings.monitors
    assert monitor.name == "default" and monitor.model_name == "volume-monitor"
    assert monitor.dimensions == ("channelid", "actioncode", "os_family")
    assert settings.monitor() is monitor


def test_monitors_yml_in_the_working_directory_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "monitors.yml").write_text(GOOD, encoding="utf-8")
    settings = load_settings(env_file=tmp_path / "absent.env", environ={"ORDERS_PASSWORD": "x"})
    assert settings.monitors_file == tmp_path / "monitors.yml"
    assert [m.name for m in settings.selected(["orders"])] == ["orders"]
    with pytest.raises(ConfigError, match="name one with --monitor"):
        settings.monitor()
    with pytest.raises(ConfigError, match="no monitor named 'order'"):
        settings.selected(["order"])


def test_the_shipped_example_and_demo_files_are_valid(tmp_path):
    for name in ("monitors.example.yml", "monitors.demo.yml"):
        settings = load_settings(
            env_file=tmp_path / "absent.env",
            environ={
                "VM_MONITORS": str(ROOT / name),
                "EVENTS_DATABASE_URL": "sqlite:///x.db",
                "ORDERS_DB_PASSWORD": "pw",
                "PAYMENTS_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
                "PAYMENTS_PAGERDUTY_KEY": "key",
            },
        )
        assert [m.name for m in settings.monitors] == ["activity", "orders"]


BAD_FILES = {
    "unknown key": (
        "monitors:\n  orders:\n    query: q.sql\n    database_url: sqlite:///x.db\n"
        "    dimentions: [country]\n",
        "monitors.yml: monitor 'orders': unknown key 'dimentions'",
    ),
    "unknown key in defaults": (
        "defaults:\n  databse_url: x\nmonitors:\n  a:\n    query: q.sql\n",
        "monitors.yml: defaults: unknown key 'databse_url'",
    ),
    "missing query": (
        "monitors:\n  orders:\n    database_url: sqlite:///x.db\n",
        "monitors.yml: monitor 'orders': missing key 'query'",
    ),
    "duplicate name": (
        "monitors:\n  orders:\n    query: a.sql\n  orders:\n    query: b.sql\n",
        "monitors.yml: 'orders' is given twice (line 4)",
    ),
    "unset variable": (
        "monitors:\n  orders:\n    query: q.sql\n    database_url: ${NOT_SET_ANYWHERE}\n",
        "monitors.yml: monitor 'orders': database_url uses ${NOT_SET_ANYWHERE}, which is not set",
    ),
    "YAML syntax error": (
        "monitors:\n  orders:\n    query: q.sql\n   database_url: [x\n",
        "monitors.yml: not valid YAML at line",
    ),
    "bad name": (
        "monitors:\n  Orders EU:\n    query: q.sql\n",
        "monitors.yml: monitor name 'Orders EU' must match [a-z0-9_-]+",
    ),
    "share out of range": (
        "monitors:\n  o:\n    query: q.sql\n    database_url: sqlite:///x.db\n    alert_share: 2\n",
        "monitors.yml: monitor 'o': alert_share: Input should be less than or equal to 1",
    ),
    "budget of no false alert": (
        "monitors:\n  o:\n    query: q.sql\n    database_url: sqlite:///x.db\n"
        "    alert_budget: 0\n",
        "monitors.yml: monitor 'o': alert_budget: Input should be greater than 0",
    ),
    "reserved dimension": (
        "monitors:\n  o:\n    query: q.sql\n    dimensions: [date, country]\n",
        "monitors.yml: monitor 'o': dimensions: date cannot be a dimension",
    ),
    "no monitors key": ("monitor:\n  o: {}\n", "monitors.yml: expected a mapping with the key"),
    "bad database URL": (
        "monitors:\n  o:\n    query: q.sql\n    database_url: postgres//x\n",
        "monitors.yml: monitor 'o': database_url is not a valid database URL",
    ),
    "shared model name": (
        "defaults:\n  database_url: sqlite:///x.db\n  model_name: shared\n"
        "monitors:\n  a:\n    query: a.sql\n  b:\n    query: b.sql\n",
        "monitors.yml: monitors share the model_name 'shared'",
    ),
    "bad recipient": (
        "monitors:\n  o:\n    query: q.sql\n    recipients: [oncall]\n",
        "monitors.yml: monitor 'o': recipients: every recipient must be an email address",
    ),
    "unknown channel": (
        "monitors:\n  o:\n    query: q.sql\n    notify:\n      sms: {number: 1}\n",
        "monitors.yml: monitor 'o': unknown key 'notify.sms'",
    ),
    "channel without its URL": (
        "monitors:\n  o:\n    query: q.sql\n    notify:\n      slack: {min_severity: error}\n",
        "monitors.yml: monitor 'o': missing key 'notify.slack.webhook_url'",
    ),
    "unknown severity": (
        "monitors:\n  o:\n    query: q.sql\n    notify:\n"
        "      webhook: {url: 'https://h.example.com/x', min_severity: urgent}\n",
        "monitors.yml: monitor 'o': notify.webhook.min_severity: Input should be 'warning', "
        "'error' or 'critical'",
    ),
    "unknown holiday country": (
        "monitors:\n  o:\n    query: q.sql\n    database_url: sqlite:///x.db\n    holidays: XX\n",
        "monitors.yml: monitor 'o': holidays: holidays: 'XX' is not a country",
    ),
    "two freshness sources": (
        "monitors:\n  o:\n    query: q.sql\n    database_url: sqlite:///x.db\n"
        "    freshness: f.sql\n    freshness_column: latest\n",
        "monitors.yml: monitor 'o': freshness and freshness_column are both set: give one",
    ),
    "unknown direction": (
        "monitors:\n  o:\n    query: q.sql\n    alert_direction: down\n",
        "monitors.yml: monitor 'o': alert_direction: Input should be 'both', 'low' or 'high'",
    ),
    "webhook URL that is no URL": (
        "monitors:\n  o:\n    query: q.sql\n    database_url: sqlite:///x.db\n    notify:\n"
        "      teams: {webhook_url: 'hooks.example.com/s3cr3t'}\n",
        "monitors.yml: monitor 'o': notify.teams.webhook_url must be an http:// or https:// URL",
    ),
}


def test_notify_routes_a_monitor_and_replaces_the_default_channels(tmp_path):
    settings = settings_with(
        tmp_path,
        """
        defaults:
          database_url: sqlite:///x.db
          query: q.sql
        monitors:
          quiet: {}
          paged:
            recipients: [payments@example.com]
            notify:
              email: {min_severity: error}
              slack: {webhook_url: "${SLACK_URL}", min_severity: critical}
              pagerduty: {routing_key: "${PD_KEY}", url: "https://events.eu.pagerduty.com/v2/enqueue"}
        """,
        SLACK_URL="https://hooks.slack.com/services/T/B/s3cr3t",
        PD_KEY="k3y",
        SMTP_HOST="mail.example.com",
        ALERT_TO="oncall@example.com",
        VM_WEBHOOK_URL="https://n8n.example.com/webhook/abc",
        VM_WEBHOOK_MIN_SEVERITY="error",
    )
    quiet, paged = settings.monitors
    assert [(r.channel, r.min_severity, r.recipients) for r in quiet.routes] == [
        ("email", "warning", ("oncall@example.com",)),
        ("webhook", "error", ()),
    ]
    assert quiet.route("webhook").target == "https://n8n.example.com/webhook/abc"
    assert [(r.channel, r.min_severity) for r in paged.routes] == [
        ("email", "error"), ("slack", "critical"), ("pagerduty", "warning"),
    ]  # fmt: skip
    assert paged.route("email").recipients == ("payments@example.com",)
    assert paged.route("pagerduty").endpoint == "https://events.eu.pagerduty.com/v2/enqueue"
    assert paged.route("pagerduty").target == "k3y"
    assert paged.route("slack").takes("critical") and not paged.route("slack").takes("error")
    assert {"https://hooks.slack.com/services/T/B/s3cr3t", "/services/T/B/s3cr3t", "k3y",
            "/webhook/abc"} <= set(settings.secrets)  # fmt: skip
    assert "s3cr3t" not in repr(settings) and "k3y" not in repr(settings)


def test_email_is_routed_only_where_smtp_is_set_up(tmp_path):
    text = "monitors:\n  o:\n    database_url: sqlite:///x.db\n    query: q.sql\n"
    assert settings_with(tmp_path, text, ALERT_TO="a@example.com").monitors[0].routes == ()
    routes = settings_with(tmp_path, text, ALERT_TO="a@example.com", SMTP_HOST="m").monitors[0]
    assert [r.channel for r in routes.routes] == ["email"]


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_each_mistake_is_one_line_naming_file_monitor_and_key(tmp_path, case):
    text, expected = BAD_FILES[case]
    assert error_of(tmp_path, text).startswith(expected)


def test_a_missing_monitors_file_named_by_vm_monitors_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"VM_MONITORS names .*absent\.yml, which does not exist"):
        load_settings(
            env_file=tmp_path / "absent.env", environ={"VM_MONITORS": str(tmp_path / "absent.yml")}
        )


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_monitors_file_stops_deploy_in_one_line_without_a_traceback(tmp_path, case):
    text, expected = BAD_FILES[case]
    (tmp_path / "monitors.yml").write_text(text)
    result = run("deploy.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"volume-monitor: error: {expected}")


def test_gates_and_holidays_are_read_per_monitor_with_defaults(tmp_path):
    text = (
        "defaults:\n  database_url: sqlite:///x.db\n  alert_min_change_pct: 10\n"
        "monitors:\n  a:\n    query: a.sql\n"
        "  b:\n    query: b.sql\n    holidays: de-by\n    alert_min_change: 50\n"
        "    alert_budget: 0.1\n"
        "    alert_min_change_pct: 25\n    alert_direction: low\n"
        "    freshness: sql/latest.sql\n    late_tolerance_minutes: 30\n    settle_hours: 6\n"
    )
    a, b = settings_with(tmp_path, text).monitors
    assert (a.alert_min_change, a.alert_min_change_pct, a.alert_direction, a.holidays) == (
        0.0, 10.0, "both", ""
    )  # fmt: skip
    assert (b.alert_min_change, b.alert_min_change_pct, b.alert_direction, b.holidays) == (
        50.0, 25.0, "low", "DE-BY"
    )  # fmt: skip
    assert (a.alert_budget, b.alert_budget) == (0.5, 0.1)
    assert (a.freshness_path, a.late_tolerance_minutes, a.settle_hours) == (None, 60.0, 0.0)
    assert b.freshness_path == tmp_path / "sql" / "latest.sql"
    assert (b.late_tolerance_minutes, b.settle_hours) == (30.0, 6.0)


def test_the_default_monitor_reads_its_gates_and_holidays_from_vm_settings(tmp_path):
    settings = load_settings(
        env_file=tmp_path / "absent.env",
        environ={
            "VM_ALERT_MIN_CHANGE": "100", "VM_ALERT_MIN_CHANGE_PCT": "15",
            "VM_ALERT_DIRECTION": "High", "VM_HOLIDAYS": "au-vic", "VM_ALERT_BUDGET": "1.5",
        },
    )  # fmt: skip
    monitor = settings.monitor()
    assert (monitor.alert_min_change, monitor.alert_min_change_pct) == (100.0, 15.0)
    assert monitor.alert_budget == 1.5
    assert (monitor.alert_direction, monitor.holidays) == ("high", "AU-VIC")
    for key, value, message in [
        ("VM_HOLIDAYS", "Narnia", "VM_HOLIDAYS: holidays: 'NARNIA' is not a country"),
        ("VM_ALERT_DIRECTION", "up", "VM_ALERT_DIRECTION must be one of both, low, high"),
        ("VM_ALERT_MIN_CHANGE_PCT", "-5", "VM_ALERT_MIN_CHANGE_PCT must be 0 or more per cent"),
        ("VM_ALERT_BUDGET", "0", "VM_ALERT_BUDGET must be a positive number, not '0'"),
        ("VM_ALERT_BUDGET", "often", "VM_ALERT_BUDGET must be a number, not 'often'"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_settings(env_file=tmp_path / "absent.env", environ={key: value})
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
