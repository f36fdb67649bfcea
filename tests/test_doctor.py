"""The configuration checks against real parts: the demo SQLite database, a private MLflow
store with a promoted model, folders on disk and an SMTP server on 127.0.0.1. Each test breaks
one piece and expects exactly that check (and any check that needs it) to fail."""

from __future__ import annotations

import pytest

from conftest import QUERY, free_port, settings_in, smtp_env
from volume_monitor import clock
from volume_monitor.doctor import Check, format_report, run_checks

NAMES = ["database", "query", "model", "mlflow", "state", "results", "log", "smtp"]
PASSWORD = "s3cret-Pa55"


def by_name(checks: list[Check]) -> dict[str, Check]:
    assert [c.name for c in checks] == NAMES
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
    assert checks["state"].detail.endswith("volume-monitor.db at schema revision 0002")
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
