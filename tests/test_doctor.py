"""The configuration checks against real parts: the demo SQLite database, a private MLflow
store with a promoted model, folders on disk, an SMTP server and HTTP receivers on 127.0.0.1.
Each test breaks one piece and expects exactly that check (and any check that needs it) to
fail."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import QUERY, free_port, run, settings_in, smtp_env
from volume_monitor import clock
from volume_monitor.config import CHANNELS
from volume_monitor.doctor import Check, format_report, run_checks

NAMES = ["database", "query", "model", "mlflow", "state", "results", "log", "smtp"]
PASSWORD = "s3cret-Pa55"


def by_name(checks: list[Check], names: list[str] = NAMES) -> dict[str, Check]:
    assert [c.name for c in checks] == names
    for check in checks:
        assert check.detail and "\n" not in check.detail, check
    return {c.name: c for c in checks}


def failing(checks: list[Check]) -> set[str]:
    return {name for name, check in by_name(checks).items() if not check.ok}


def query_without(column: str, folder) -> str:
    """The shipped query with ``column`` left out of its SELECT list, binds unchanged."""
    sql = QUERY.read_text().replace(f"    {column},\n", "", 1)
    assert f"    {column},\n" not in sql and ":start" in sql and ":end" in sql
    path = folder / f"without_{column}.sql"
    path.write_text(sql)
    return str(path)


@pytest.fixture
def login_env(smtp_server) -> dict[str, str]:
    port, _ = smtp_server
    return {**smtp_env(port), "SMTP_USER": "monitor", "SMTP_PASSWORD": "right-password"}


def test_a_healthy_configuration_passes_every_check(trained_settings, smtp_server, login_env):
    settings = trained_settings(**login_env)

    checks = by_name(run_checks(settings))

    assert all(c.ok for c in checks.values()), format_report(list(checks.values()))
    assert checks["database"].detail.endswith("reachable")
    yesterday = clock.yesterday(settings)
    assert checks["query"].detail == (
        f"daily_volume.sql: columns match (channelid, actioncode, os_family), no rows for "
        f"{yesterday}"
    )
    assert "reachable, 1 registered model(s)" in checks["mlflow"].detail
    assert checks["state"].detail.endswith("volume-monitor.db at schema revision 0003")
    assert checks["model"].detail.startswith("models:/volume-monitor@production is version 1 ")
    assert checks["results"].detail == f"{settings.results_dir} writable"
    assert checks["smtp"].detail == f"login as monitor at 127.0.0.1:{smtp_server[0]} ok"
    assert smtp_server[1].logins == [("monitor", "right-password")]
    assert not smtp_server[1].messages, "a check sends nothing"
    assert list(settings.results_dir.iterdir()) == [], "the probe file is removed"


def test_report_has_one_aligned_line_per_check():
    checks = [Check("database", True, "sqlite:///x.db reachable"), Check("smtp", False, "down")]

    assert format_report(checks).splitlines() == [
        "ok    database  sqlite:///x.db reachable",
        "FAIL  smtp      down",
    ]


def with_database(url: str, folder, **env: str):
    """Settings on the private trained store in ``folder`` (see ``trained_settings``) with
    another database: ``trained_settings`` itself always names the demo database."""
    return settings_in(folder, VM_DATABASE_URL=url, **env)


def test_unreachable_database_fails_database_and_query_without_its_password(
    trained_settings, login_env, tmp_path
):
    url = f"postgresql+psycopg2://monitor:{PASSWORD}@127.0.0.1:{free_port()}/events"
    settings = with_database(url, tmp_path, **login_env)

    checks = run_checks(settings)

    assert failing(checks) == {"database", "query"}
    detail = by_name(checks)["database"].detail
    assert detail.startswith("cannot reach postgresql+psycopg2://monitor:***@127.0.0.1:")
    assert "refused" in detail.lower()
    assert by_name(checks)["query"].detail == "daily_volume.sql not run: the database check failed"
    assert PASSWORD not in format_report(checks)


def test_missing_sqlite_file_is_reported_not_created(trained_settings, tmp_path):
    absent = tmp_path / "nowhere" / "events.db"
    settings = with_database(f"sqlite:///{absent}", tmp_path)

    checks = by_name(run_checks(settings, smtp_login=False))

    assert not checks["database"].ok and "the file does not exist" in checks["database"].detail
    assert not absent.exists()


def test_query_missing_a_column_fails_the_query_and_the_model(
    trained_settings, login_env, tmp_path
):
    settings = trained_settings(VM_QUERY=query_without("channelid", tmp_path), **login_env)

    checks = run_checks(settings)

    assert failing(checks) == {"query", "model"}
    assert "missing the column(s) channelid" in by_name(checks)["query"].detail
    assert by_name(checks)["model"].detail == (
        "models:/volume-monitor@production (version 1) cannot score this monitor: it was "
        "trained on another query: the query file has changed since; retrain"
    )


def test_a_model_of_another_monitor_is_reported(trained_settings, login_env, tmp_path):
    monitors = tmp_path / "monitors.yml"
    monitors.write_text(
        "monitors:\n  orders:\n    database_url: sqlite:///x.db\n    query: q.sql\n"
        "    model_name: volume-monitor\n"
    )
    (tmp_path / "q.sql").write_text(QUERY.read_text())
    (tmp_path / "x.db").write_bytes(b"")

    checks = {c.name: c for c in run_checks(trained_settings(VM_MONITORS=str(monitors)), False)}

    assert not checks["orders: model"].ok
    assert checks["orders: model"].detail.endswith(
        "cannot score this monitor: it was trained for the monitor 'default', not 'orders'"
    )


def test_query_without_binds_is_reported(trained_settings, login_env, tmp_path):
    path = tmp_path / "unbound.sql"
    path.write_text("SELECT DATE(created_at) AS date FROM activityhistory")
    settings = trained_settings(VM_QUERY=str(path), **login_env)

    checks = run_checks(settings)

    assert failing(checks) == {"query", "model"}
    assert ":start and :end" in by_name(checks)["query"].detail


def test_absent_mlflow_store_fails_store_and_model_without_creating_it(
    trained_settings, login_env, tmp_path
):
    store = tmp_path / "elsewhere" / "mlflow.db"
    settings = trained_settings(MLFLOW_TRACKING_URI=f"sqlite:///{store}", **login_env)

    checks = run_checks(settings)

    assert failing(checks) == {"mlflow", "model"}
    assert by_name(checks)["mlflow"].detail == (
        f"the MLflow store file {store} does not exist (train.py creates it)"
    )
    assert by_name(checks)["model"].detail == "not run: the mlflow check failed"
    assert not store.exists()


def test_unknown_alias_fails_only_the_model(trained_settings, login_env):
    settings = trained_settings(VM_MODEL_ALIAS="nonexistent", **login_env)

    checks = run_checks(settings)

    assert failing(checks) == {"model"}
    assert "has the alias 'nonexistent'" in by_name(checks)["model"].detail


def test_results_dir_under_a_file_fails_only_results(trained_settings, login_env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings = trained_settings(VM_RESULTS_DIR=str(blocker / "results"), **login_env)

    checks = run_checks(settings)

    assert failing(checks) == {"results"}
    assert "Not a directory" in by_name(checks)["results"].detail


def test_smtp_down_fails_only_smtp(trained_settings):
    port = free_port()
    settings = trained_settings(**smtp_env(port))

    checks = run_checks(settings)

    assert failing(checks) == {"smtp"}
    detail = by_name(checks)["smtp"].detail
    assert detail.startswith(f"cannot connect to 127.0.0.1:{port}: ")
    assert "refused" in detail.lower()


def test_refused_login_fails_only_smtp_without_the_password(
    trained_settings, smtp_server, login_env
):
    settings = trained_settings(**{**login_env, "SMTP_PASSWORD": PASSWORD})

    checks = run_checks(settings)

    assert failing(checks) == {"smtp"}
    detail = by_name(checks)["smtp"].detail
    assert detail.startswith(f"cannot log in as monitor at 127.0.0.1:{smtp_server[0]}: 535 ")
    assert PASSWORD not in format_report(checks)


def test_smtp_not_configured_fails_with_where_alerts_go(trained_settings):
    checks = by_name(run_checks(trained_settings()))

    assert not checks["smtp"].ok
    assert checks["smtp"].detail == "SMTP_HOST or ALERT_TO not set: alerts are written to email.txt"


def test_smtp_login_can_be_skipped(trained_settings, smtp_server, login_env):
    checks = by_name(run_checks(trained_settings(**login_env), smtp_login=False))

    assert checks["smtp"].ok and "not contacted" in checks["smtp"].detail
    assert smtp_server[1].logins == []


# --- alert channels ---------------------------------------------------------------------

SLACK_PATH = "/services/T0/B0/slack-token-s3cret"
TEAMS_PATH = "/workflows/f00d/triggers/manual/paths/invoke?api-version=1&sig=teams-sig-s3cret"
WEBHOOK_PATH = "/hooks/webhook-token-s3cret"
EVENTS_PATH = "/v2/enqueue"
ROUTING_KEY = "R0ut1ngKeys3cret0123456789abcdef"  # 32 characters, like PagerDuty's
PATHS = {"slack": SLACK_PATH, "teams": TEAMS_PATH, "webhook": WEBHOOK_PATH,
         "pagerduty": EVENTS_PATH}  # fmt: skip
PROBES = {
    "slack": {},
    "teams": {"type": "message", "attachments": []},
    "webhook": {
        "version": "4", "receiver": "volume-monitor", "status": "resolved",
        "groupKey": "volume-monitor/doctor", "truncatedAlerts": 0, "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "alerts": [],
        "test": True,
    },
    "pagerduty": {"routing_key": ROUTING_KEY, "event_action": "trigger"},
}  # fmt: skip
# What a live service answers to its probe: Slack to an empty message, PagerDuty to an event
# without its payload.
LIVE = {"slack": 400, "teams": 202, "webhook": 200, "pagerduty": 400}


def hooks_env(url, **overrides: str) -> dict[str, str]:
    """The default monitor's four HTTP channels at ``url(path)``."""
    return {
        "VM_SLACK_WEBHOOK_URL": url(SLACK_PATH),
        "VM_TEAMS_WEBHOOK_URL": url(TEAMS_PATH),
        "VM_WEBHOOK_URL": url(WEBHOOK_PATH),
        "VM_PAGERDUTY_URL": url(EVENTS_PATH),
        "VM_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        **overrides,
    }


def channel_checks(settings, names=None) -> dict[str, Check]:
    """The channel checks of a doctor run (the others fail fast without a database or store),
    each one line without a secret."""
    checks = run_checks(settings, smtp_login=False, names=names)
    assert "s3cret" not in format_report(checks).lower()
    found = {c.name: c for c in checks if c.name.rpartition(": ")[2] in CHANNELS}
    for check in found.values():
        assert check.detail and "\n" not in check.detail, check
    return found


def test_each_channel_passes_and_gets_only_its_probe(receiver, tmp_path):
    receiver.statuses.update({PATHS[channel]: LIVE[channel] for channel in PATHS})
    label = f"http://127.0.0.1:{receiver.port}"

    checks = channel_checks(settings_in(tmp_path, **hooks_env(receiver.url)))

    assert list(checks) == ["slack", "teams", "webhook", "pagerduty"]
    assert all(c.ok for c in checks.values()), format_report(list(checks.values()))
    refused = 'answered 400 Bad Request: {"error": "receiver says no"}'
    assert checks["slack"].detail == (
        f"{label} for default: reachable, webhook accepted: {refused} to an empty message"
    )
    assert checks["teams"].detail == (
        f"{label} for default: accepted: answered 202 Accepted: ok "
        "(the workflow may run with nothing to post)"
    )
    assert checks["webhook"].detail == f"{label} for default: accepted: answered 200 OK: ok"
    assert checks["pagerduty"].detail == (
        f"{label} for default: reachable, routing key not verifiable without an incident: {refused}"
    )
    assert len(receiver.requests) == 4, "one probe per endpoint"
    assert {r.path: r.body for r in receiver.requests} == {
        PATHS[channel]: PROBES[channel] for channel in PATHS
    }
    hook = next(r for r in receiver.requests if r.path == WEBHOOK_PATH)
    assert hook.headers["Idempotency-Key"] == "volume-monitor/doctor"
    assert {r.headers["User-Agent"] for r in receiver.requests} == {"volume-monitor"}


@pytest.mark.parametrize(
    ("channel", "status", "outcome"),
    [
        ("slack", 404, "webhook refused or gone"),
        ("slack", 403, "webhook refused or gone"),
        ("slack", 410, "webhook refused or gone"),
        ("slack", 500, "failing"),
        ("teams", 403, "workflow refused"),
        ("teams", 404, "workflow refused"),
        ("teams", 502, "failing"),
        ("webhook", 404, "failing"),
        ("webhook", 302, "failing"),
        ("pagerduty", 404, "refused"),
        ("pagerduty", 401, "refused"),
        ("pagerduty", 429, "failing"),
    ],
)
def test_a_refusing_receiver_fails_only_its_channel(receiver, tmp_path, channel, status, outcome):
    receiver.statuses.update({PATHS[name]: LIVE[name] for name in PATHS})
    receiver.statuses[PATHS[channel]] = status

    checks = channel_checks(settings_in(tmp_path, **hooks_env(receiver.url)))

    assert {name for name, check in checks.items() if not check.ok} == {channel}
    assert checks[channel].detail.startswith(
        f"http://127.0.0.1:{receiver.port} for default: {outcome}: answered {status} "
    )


@dataclass
class Service:
    """A real HTTP server on 127.0.0.1 answering each path ``answers[path]`` (status, body)
    the way Slack or PagerDuty word their answers; ``bodies`` are the JSON bodies it got."""

    port: int = 0
    answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    bodies: list[object] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def service():
    state = Service()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            state.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status, text = state.answers[self.path]
            self.send_response(status)
            self.send_header("Content-Length", str(len(text.encode())))
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


PD_INVALID = '{"status":"invalid event","message":"Event object is invalid","errors":[%s]}'


@pytest.mark.parametrize(
    ("channel", "status", "body", "ok", "outcome"),
    [
        ("slack", 400, "no_text", True, "reachable, webhook accepted: answered 400 Bad "
         "Request: no_text to an empty message"),
        ("slack", 400, "invalid_payload", True, "reachable, webhook accepted"),
        ("slack", 200, "ok", True, "accepted: answered 200 OK: ok (an empty message may"),
        ("slack", 400, "user_not_found", False, "webhook refused or gone: answered 400 Bad "
         "Request: user_not_found"),
        ("slack", 403, "invalid_token", False, "webhook refused or gone: answered 403 "
         "Forbidden: invalid_token"),
        ("slack", 404, "no_service", False, "webhook refused or gone: answered 404"),
        ("slack", 410, "channel_is_archived", False, "webhook refused or gone: answered 410"),
        ("pagerduty", 400, PD_INVALID % '"\'payload\' is missing or not an object"', True,
         "reachable, routing key not verifiable without an incident: answered 400 Bad "
         "Request: {\"status\":\"invalid event\",\"message\":\"Event object is invalid\""),
        ("pagerduty", 400, PD_INVALID % '"Length of \'routing_key\' is incorrect (should be '
         '32 characters)"', False, "routing key refused: answered 400 Bad Request: "),
        ("pagerduty", 400, "Invalid routing key", False, "routing key refused"),
        ("pagerduty", 202, '{"status":"success","message":"Event processed"}', True,
         "accepted: answered 202 Accepted: "),
    ],
)  # fmt: skip
def test_the_service_s_own_answer_is_judged(service, tmp_path, channel, status, body, ok, outcome):
    service.answers[PATHS[channel]] = (status, body)
    env = {"VM_SLACK_WEBHOOK_URL": service.url(SLACK_PATH)}
    if channel == "pagerduty":
        env = {
            "VM_PAGERDUTY_URL": service.url(EVENTS_PATH),
            "VM_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        }

    check = channel_checks(settings_in(tmp_path, **env))[channel]

    assert check.ok is ok
    assert check.detail.startswith(f"http://127.0.0.1:{service.port} for default: {outcome}")
    assert service.bodies == [PROBES[channel]]


def test_a_receiver_quoting_the_secret_path_has_it_masked(service, tmp_path):
    service.answers[SLACK_PATH] = (404, f"<pre>Cannot POST {SLACK_PATH}</pre>")
    service.answers[TEAMS_PATH] = (404, f"no workflow at {TEAMS_PATH.partition('?')[0]}")
    env = {"VM_SLACK_WEBHOOK_URL": service.url(SLACK_PATH),
           "VM_TEAMS_WEBHOOK_URL": service.url(TEAMS_PATH)}  # fmt: skip

    checks = channel_checks(settings_in(tmp_path, **env))

    assert checks["slack"].detail.endswith("answered 404 Not Found: <pre>Cannot POST ***</pre>")
    assert checks["teams"].detail.endswith("answered 404 Not Found: no workflow at ***")


def test_a_receiver_that_never_answers_fails_within_the_timeout(receiver, tmp_path):
    receiver.silent.update(PATHS.values())
    settings = settings_in(tmp_path, VM_HTTP_TIMEOUT="1", **hooks_env(receiver.url))

    started = time.monotonic()
    checks = channel_checks(settings)
    elapsed = time.monotonic() - started

    assert len(receiver.requests) == 4
    for channel, check in checks.items():
        assert not check.ok
        assert check.detail == (
            f"http://127.0.0.1:{receiver.port} for default: no answer within 1 s"
        ), channel
    assert elapsed < 3.5, f"four silent endpoints are waited for together: {elapsed:.1f} s"


def test_a_closed_port_fails_every_channel_on_it(tmp_path):
    port = free_port()
    env = hooks_env(lambda path: f"http://127.0.0.1:{port}{path}")

    checks = channel_checks(settings_in(tmp_path, **env))

    assert list(checks) == ["slack", "teams", "webhook", "pagerduty"]
    for check in checks.values():
        assert not check.ok
        assert check.detail == (
            f"http://127.0.0.1:{port} for default: cannot reach the receiver: Connection refused"
        )


def test_a_shared_endpoint_is_checked_once_naming_its_monitors(receiver, tmp_path):
    monitors = tmp_path / "monitors.yml"
    monitors.write_text(
        "defaults:\n  database_url: sqlite:///events.db\n  query: q.sql\n"
        "  notify:\n    slack: {webhook_url: '${TEAM_SLACK}'}\n"
        "monitors:\n  activity: {}\n  orders: {}\n"
        "  refunds:\n    notify:\n      slack: {webhook_url: '${REFUNDS_SLACK}'}\n"
        "      pagerduty: {routing_key: '${REFUNDS_PD}', url: '${EVENTS}'}\n"
    )
    receiver.statuses.update({SLACK_PATH: 400, "/refunds-s3cret": 404, EVENTS_PATH: 400})
    settings = settings_in(
        tmp_path, VM_MONITORS=str(monitors), TEAM_SLACK=receiver.url(SLACK_PATH),
        REFUNDS_SLACK=receiver.url("/refunds-s3cret"), REFUNDS_PD=ROUTING_KEY,
        EVENTS=receiver.url(EVENTS_PATH),
    )  # fmt: skip
    label = f"http://127.0.0.1:{receiver.port}"

    checks = channel_checks(settings)

    assert list(checks) == ["activity +1: slack", "refunds: slack", "pagerduty"]
    assert checks["activity +1: slack"].ok
    assert checks["activity +1: slack"].detail.startswith(f"{label} for activity, orders: ")
    assert not checks["refunds: slack"].ok
    assert checks["refunds: slack"].detail.startswith(f"{label} for refunds: webhook refused")
    assert checks["pagerduty"].detail.startswith(f"{label} for refunds: reachable")
    assert sorted(r.path for r in receiver.requests) == sorted(
        [SLACK_PATH, "/refunds-s3cret", EVENTS_PATH]
    ), "each distinct endpoint once"

    only = channel_checks(settings, names=["orders"])

    assert list(only) == ["slack"] and only["slack"].detail.startswith(f"{label} for orders: ")


def test_doctor_command_prints_each_channel_and_exits_1_when_one_fails(trained_workdir, receiver):
    receiver.statuses.update({PATHS[channel]: LIVE[channel] for channel in PATHS})
    env = {"SMTP_HOST": "127.0.0.1", "ALERT_TO": "oncall@example.com", **hooks_env(receiver.url)}
    doctor = ("volume_monitor/cli.py", "doctor", "--no-smtp-login")

    healthy = run(*doctor, cwd=trained_workdir, **env)
    receiver.statuses[SLACK_PATH] = 404
    broken = run(*doctor, cwd=trained_workdir, **env)

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.endswith("all checks passed\n")
    assert [line.split()[:2] for line in healthy.stdout.splitlines()[-5:-1]] == [
        ["ok", "slack"], ["ok", "teams"], ["ok", "webhook"], ["ok", "pagerduty"],
    ]  # fmt: skip
    assert broken.returncode == 1 and broken.stdout.endswith("1 problem(s): slack\n")
    assert f"FAIL  slack      http://127.0.0.1:{receiver.port} for default: " in broken.stdout
    for result in (healthy, broken):
        assert "s3cret" not in (result.stdout + result.stderr).lower()
        assert ROUTING_KEY not in result.stdout + result.stderr


def test_the_freshness_query_is_run_for_yesterday_and_a_bad_one_fails(
    trained_settings, login_env, tmp_path
):
    from conftest import ROOT

    names = [*NAMES[:3], "freshness", *NAMES[3:]]
    good = trained_settings(VM_FRESHNESS_QUERY=str(ROOT / "sql" / "latest_event.sql"), **login_env)
    checks = by_name(run_checks(good), names)
    yesterday = clock.yesterday(good)
    assert all(c.ok for c in checks.values()), format_report(list(checks.values()))
    assert checks["freshness"].detail == f"latest_event.sql: no events on {yesterday}"
    bad_sql = tmp_path / "soon.sql"
    bad_sql.write_text("SELECT 'soon' AS latest WHERE :start <= :end\n")
    bad = trained_settings(VM_FRESHNESS_QUERY=str(bad_sql), **login_env)
    checks = by_name(run_checks(bad), names)
    assert {name for name, c in checks.items() if not c.ok} == {"freshness"}
    assert checks["freshness"].detail == "the freshness query returned 'soon', not a time"


def test_a_freshness_column_is_read_by_the_query_check_and_is_no_dimension(
    trained_settings, login_env, tmp_path
):
    with_latest = QUERY.read_text().replace(
        "    COUNT(*) AS count\n", "    COUNT(*) AS count,\n    MAX(created_at) AS latest_event\n"
    )
    fresh = tmp_path / "fresh.sql"
    fresh.write_text(with_latest)
    settings = trained_settings(VM_QUERY=str(fresh), VM_FRESHNESS_COLUMN="latest_event",
                                **login_env)  # fmt: skip
    checks = by_name(run_checks(settings), [*NAMES[:3], "freshness", *NAMES[3:]])
    yesterday = clock.yesterday(settings)
    assert checks["query"].detail.startswith(
        "fresh.sql: columns match (channelid, actioncode, os_family), no rows"
    )
    assert checks["freshness"].ok
    assert checks["freshness"].detail == f"column latest_event: no events on {yesterday}"
    assert {name for name, c in checks.items() if not c.ok} == {"model"}, "another query"
