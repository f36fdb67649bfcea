"""Secrets: the database and SMTP passwords never reach the console, the log, the results, the
email, the MLflow store or an error message; ``.env`` stays out of git; dates reach SQL only as
bound parameters; a model is loaded only with the package's own list of trusted types."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from conftest import (
    FIRST_DAY,
    LAST_DAY,
    ROOT,
    Inbox,
    error_lines,
    run,
    server_url,
    settings_in,
    small_spec,
    smtp_env,
)  # fmt: skip
from volume_monitor import jobs, tracking
from volume_monitor.demo import write_demo

DB_SECRET = "Db:pass/w0rd@9"  # URL-special characters: it travels percent-encoded


def forms(secret: str) -> list[str]:
    """The spellings a password can take in a URL or a log."""
    return sorted({secret, quote(secret, safe=""), quote(secret)})


def every_text_under(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_passwords_appear_nowhere_after_train_deploy_and_an_alert(workdir, smtp_server):
    port, inbox = smtp_server
    url = make_url(server_url("postgresql")).set(password=DB_SECRET)
    write_demo(create_engine(url), small_spec(), replace=True)  # trust auth ignores the password
    env = {
        "VM_DATABASE_URL": url.render_as_string(hide_password=False),
        "VM_LOG_LEVEL": "DEBUG",
        **smtp_env(port),
        "SMTP_USER": "monitor",
        "SMTP_PASSWORD": Inbox.PASSWORD,
    }
    trained = run("train.py", "--start", str(FIRST_DAY), "--end", "2026-07-01", "--promote",
                  cwd=workdir, **env)  # fmt: skip
    deployed = run("deploy.py", "--date", str(LAST_DAY), cwd=workdir, **env)
    assert trained.returncode == 0, trained.stderr
    assert deployed.returncode == 0, deployed.stderr
    assert len(inbox.messages) == 1 and inbox.logins == [("monitor", Inbox.PASSWORD)]

    console = trained.stdout + trained.stderr + deployed.stdout + deployed.stderr
    stored = b"".join(
        every_text_under(workdir / part) for part in ("results", "logs", "mlruns")
    ) + b"".join(envelope.original_content for envelope in inbox.envelopes)
    for secret in [*forms(DB_SECRET), Inbox.PASSWORD]:
        assert secret not in console
        assert secret.encode() not in stored, secret

    client = tracking.client(settings_in(workdir, **env))
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=1000
    )
    assert runs, "the training and scoring runs are there"
    for logged in runs:
        values = [*logged.data.params.values(), *logged.data.tags.values()]
        assert not any(DB_SECRET in v or Inbox.PASSWORD in v for v in values)


def test_env_file_is_ignored_by_git():
    checked = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", ".env"], cwd=ROOT, check=False
    )
    assert checked.returncode == 0, ".env must be listed in .gitignore"
    example = (ROOT / ".env.example").read_text()
    assert "SMTP_PASSWORD=\n" in example or "SMTP_PASSWORD=" not in example


def test_dates_reach_sql_only_as_bound_parameters(trained_settings):
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        jobs.score_day(trained_settings(), LAST_DAY, dry_run=True)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    queries = [(s, p) for s, p in statements if "activityhistory" in s]
    assert len(queries) == 1
    statement, parameters = queries[0]
    assert str(LAST_DAY) not in statement and "2026" not in statement
    assert [str(value) for value in parameters] == [
        str(LAST_DAY),
        str(LAST_DAY + dt.timedelta(days=1)),
    ]


def test_a_model_holding_an_untrusted_type_is_refused_in_one_line(trained_workdir, monkeypatch):
    from fractions import Fraction

    import mlflow
    import mlflow.sklearn

    from volume_monitor.detect.detector import TRUSTED_TYPES

    settings = settings_in(trained_workdir)
    detector = tracking.load_model(settings).detector
    detector.extra_ = Fraction(1, 3)  # saved fine, but not a type this package trusts
    extra_type = "fractions.Fraction"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)  # for MLflow's fluent API
    mlflow.set_tracking_uri(settings.tracking_uri)
    with mlflow.start_run(experiment_id=tracking.experiment_id(settings, "volume-monitor")):
        info = mlflow.sklearn.log_model(
            detector, name="model", serialization_format="skops",
            skops_trusted_types=[*TRUSTED_TYPES, extra_type],
            registered_model_name=settings.monitor().model_name,
        )  # fmt: skip
    version = str(info.registered_model_version)
    tracking.promote(settings, version)
    result = run("deploy.py", "--date", str(LAST_DAY), cwd=trained_workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert f"volume-monitor version {version} is not loaded" in line
    assert f"types this package does not trust: ['{extra_type}']" in line
    assert not (trained_workdir / "results" / "default" / str(LAST_DAY)).exists()
