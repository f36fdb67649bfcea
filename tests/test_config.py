"""Settings: environment over .env over defaults, absolute paths, validation, secrets."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from volume_monitor.config import DEFAULTS, load_settings, redact_url, warn_unknown_keys
from volume_monitor.errors import ConfigError
from volume_monitor.logs import MASK, mask, setup_logging

DB_PASSWORD = "s3cret-db-pw"
SMTP_PASSWORD = "hunter2-smtp-pw"
SERVER_URL = f"postgresql+psycopg2://vm:{DB_PASSWORD}@db.example.com:5432/events"


def write_env(folder: Path, **values: str) -> Path:
    path = folder / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def load(tmp_path: Path, **environ: str):
    """Settings from ``environ`` only (the .env file named does not exist)."""
    return load_settings(env_file=tmp_path / "absent.env", environ=environ)


@pytest.fixture
def restore_logging():
    """Undo what setup_logging does to the root logger and the quietened loggers."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = ("alembic", "mlflow", "matplotlib", "urllib3", "yagmail", "PIL")
    levels = {name: logging.getLogger(name).level for name in noisy}
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def test_environ_beats_env_file_which_beats_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env_file = write_env(
        tmp_path,
        VM_EXPERIMENT="from-file",
        VM_MODEL_NAME="model-from-file",
        VM_RESULTS_DIR="file-results",
    )
    settings = load_settings(env_file=env_file, environ={"VM_EXPERIMENT": "from-environ"})
    assert settings.monitor().experiment == "from-environ"
    assert settings.monitor().model_name == "model-from-file"
    assert settings.results_dir == tmp_path / "file-results"
    assert settings.model_alias == DEFAULTS["VM_MODEL_ALIAS"] == "production"
    assert settings.schedule == "30 6 * * *"


def test_process_environment_is_the_default_environ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env_file = write_env(tmp_path, VM_EXPERIMENT="from-file", VM_MODEL_ALIAS="from-file")
    monkeypatch.setenv("VM_EXPERIMENT", "from-process")
    monkeypatch.delenv("VM_MODEL_ALIAS", raising=False)
    settings = load_settings(env_file=env_file)
    assert settings.monitor().experiment == "from-process"
    assert settings.model_alias == "from-file"
    assert "VM_MODEL_ALIAS" not in os.environ


def test_defaults_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load(tmp_path)
    assert settings.results_dir == tmp_path / "results"
    assert settings.log_file == tmp_path / "logs" / "volume-monitor.log"
    assert settings.monitor().query_path == tmp_path / "sql" / "daily_volume.sql"
    assert settings.monitor().database_url == f"sqlite:///{tmp_path}/data/demo.db"
    assert settings.tracking_uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert settings.artifact_dir == tmp_path / "mlruns" / "artifacts"
    assert settings.smtp.port == 25
    assert settings.smtp.configured is False
    assert settings.monitor().alert_share is None


def test_relative_paths_become_absolute_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load(
        tmp_path,
        VM_RESULTS_DIR="out/results",
        VM_LOG_FILE="var/vm.log",
        VM_QUERY="queries/volume.sql",
        VM_DATABASE_URL="sqlite:///data/events.db",
        MLFLOW_TRACKING_URI="sqlite:///store/mlflow.db",
    )
    assert settings.results_dir == tmp_path / "out" / "results"
    assert settings.results_dir.is_absolute()
    assert settings.log_file == tmp_path / "var" / "vm.log"
    assert settings.monitor().query_path == tmp_path / "queries" / "volume.sql"
    assert settings.monitor().database_url == f"sqlite:///{tmp_path / 'data' / 'events.db'}"
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def test_absolute_and_memory_sqlite_urls_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    absolute = f"sqlite:///{tmp_path / 'elsewhere' / 'x.db'}"
    assert load(tmp_path, VM_DATABASE_URL=absolute).monitor().database_url == absolute
    memory = load(tmp_path, VM_DATABASE_URL="sqlite:///:memory:").monitor().database_url
    assert make_url(memory).database == ":memory:"
    assert load(tmp_path, VM_DATABASE_URL=SERVER_URL).monitor().database_url == SERVER_URL


def test_env_file_relative_paths_resolve_against_cwd_not_file(tmp_path, monkeypatch):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    env_file = write_env(config_dir, VM_RESULTS_DIR="results-here")
    monkeypatch.chdir(work_dir)
    settings = load_settings(env_file=env_file, environ={})
    assert settings.results_dir == work_dir / "results-here"


def test_values_are_parsed(tmp_path):
    settings = load(
        tmp_path,
        SMTP_HOST=" mail.example.com ",
        SMTP_SSL="Yes",
        SMTP_STARTTLS="off",
        SMTP_TIMEOUT="2.5",
        ALERT_TO="a@example.com, b@example.com,,",
        VM_ALERT_SHARE="0.2",
        VM_ALERT_MIN_ANOMALIES="3",
        VM_TIMEZONE="Europe/Paris",
        VM_LOG_LEVEL="debug",
    )
    assert settings.smtp.host == "mail.example.com"
    assert settings.smtp.ssl is True
    assert settings.smtp.starttls is False
    assert settings.smtp.port == 465
    assert settings.smtp.timeout == 2.5
    assert settings.smtp.recipients == ("a@example.com", "b@example.com")
    assert settings.smtp.configured is True
    assert settings.monitor().alert_share == 0.2
    assert settings.monitor().alert_min_anomalies == 3
    assert settings.timezone == "Europe/Paris"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SMTP_SSL", "maybe"),
        ("SMTP_STARTTLS", "2"),
        ("SMTP_PORT", "smtp"),
        ("SMTP_PORT", "-25"),
        ("SMTP_PORT", "25.5"),
        ("SMTP_TIMEOUT", "soon"),
        ("SMTP_TIMEOUT", "0"),
        ("VM_ALERT_SHARE", "lots"),
        ("VM_ALERT_SHARE", "0"),
        ("VM_ALERT_SHARE", "1.5"),
        ("VM_ALERT_SHARE", "-0.1"),
        ("VM_ALERT_MIN_ANOMALIES", "1.5"),
        ("VM_TIMEZONE", "Mars/Olympus_Mons"),
        ("VM_TIMEZONE", "../../etc/passwd"),
        ("VM_LOG_LEVEL", "LOUD"),
        ("VM_DATABASE_URL", "not a url"),
        ("VM_DATABASE_URL", ""),
        ("MLFLOW_TRACKING_URI", "::::"),
        ("VM_MODEL_NAME", "  "),
        ("VM_SCHEDULE", ""),
        ("VM_SLACK_WEBHOOK_URL", "hooks.slack.com/services/s3cr3t"),
        ("VM_TEAMS_WEBHOOK_URL", "ftp://example.com/s3cr3t"),
        ("VM_WEBHOOK_URL", "https:///s3cr3t"),
        ("VM_PAGERDUTY_MIN_SEVERITY", "urgent"),
        ("VM_EMAIL_MIN_SEVERITY", ""),
        ("VM_HTTP_TIMEOUT", "0"),
        ("VM_DELIVERY_TIMEOUT", "never"),
        ("VM_BASE_URL", "vm.example.com"),
        ("VM_LOCK_WAIT", "-1"),
        ("VM_LOCK_WAIT", "soon"),
        ("VM_QUERY_TIMEOUT", "0"),
        ("VM_CONNECT_TIMEOUT", "inf"),
        ("VM_RUN_TIMEOUT", "-5"),
        ("VM_RUN_TIMEOUT", "2h"),
        ("VM_MAX_SERIES", "0"),
        ("VM_MAX_SERIES", "lots"),
    ],
)
def test_bad_values_raise_config_error_naming_the_variable(tmp_path, key, value):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, **{key: value})
    assert key in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_each_channel_setting_routes_the_default_monitor(tmp_path):
    settings = load(
        tmp_path, VM_SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T/B/x",
        VM_TEAMS_WEBHOOK_URL="https://prod.westeurope.logic.azure.com/workflows/y",
        VM_WEBHOOK_URL="http://127.0.0.1:9000/hook", VM_PAGERDUTY_ROUTING_KEY="k",
        VM_PAGERDUTY_MIN_SEVERITY="critical", VM_BASE_URL="https://vm.example.com/",
    )  # fmt: skip
    routes = {r.channel: r for r in settings.monitor().routes}
    assert sorted(routes) == ["pagerduty", "slack", "teams", "webhook"], "no SMTP: no email"
    assert routes["pagerduty"].endpoint == "https://events.pagerduty.com/v2/enqueue"
    assert routes["pagerduty"].min_severity == "critical" and routes["slack"].takes("warning")
    assert settings.base_url == "https://vm.example.com"
    assert (settings.http_timeout, settings.delivery_timeout) == (10.0, 300.0)
    assert (settings.run_timeout, settings.max_series) == (7200.0, 200_000)


def test_database_url_with_non_numeric_port_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="VM_DATABASE_URL"):
        load(tmp_path, VM_DATABASE_URL="postgresql://vm:pw@db.example.com:notaport/events")


@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_out_of_range_smtp_port_is_a_config_error(tmp_path, port):
    with pytest.raises(ConfigError, match="SMTP_PORT"):
        load(tmp_path, SMTP_HOST="mail.example.com", SMTP_PORT=port)


def test_bad_value_in_env_file_is_reported_too(tmp_path):
    env_file = write_env(tmp_path, SMTP_SSL="sometimes")
    with pytest.raises(ConfigError, match="SMTP_SSL"):
        load_settings(env_file=env_file, environ={})


def test_smtp_user_without_password_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, SMTP_HOST="mail.example.com", SMTP_USER="monitor")
    assert "SMTP_USER" in str(caught.value)
    assert "SMTP_PASSWORD" in str(caught.value)


def test_smtp_user_with_password_is_accepted(tmp_path):
    settings = load(tmp_path, SMTP_USER="monitor", SMTP_PASSWORD=SMTP_PASSWORD)
    assert settings.smtp.user == "monitor"
    assert settings.smtp.password == SMTP_PASSWORD


def test_unknown_vm_keys_are_warned_about(tmp_path, caplog):
    env_file = write_env(tmp_path, VM_RESUTLS_DIR="typo-in-file")
    environ = {"VM_MODEL_NAMEE": "typo-in-environ", "VM_EXPERIMENT": "known", "HOME": "/x"}
    settings = load_settings(env_file=env_file, environ=environ)
    assert settings.unknown_keys == ("VM_MODEL_NAMEE", "VM_RESUTLS_DIR")
    with caplog.at_level(logging.WARNING, logger="volume_monitor.config"):
        warn_unknown_keys(settings)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2
    assert any("VM_RESUTLS_DIR" in m for m in warned)
    assert any("VM_MODEL_NAMEE" in m for m in warned)
    assert not any("VM_EXPERIMENT" in m or "HOME" in m for m in warned)
    assert settings.monitor().experiment == "known"


def test_secrets_are_not_in_repr(tmp_path):
    settings = load(
        tmp_path, VM_DATABASE_URL=SERVER_URL, SMTP_USER="monitor", SMTP_PASSWORD=SMTP_PASSWORD
    )
    for text in (repr(settings), str(settings), repr(settings.smtp)):
        assert DB_PASSWORD not in text
        assert SMTP_PASSWORD not in text
    assert "monitor" in repr(settings.smtp)


def test_secrets_holds_both_passwords(tmp_path):
    settings = load(
        tmp_path, VM_DATABASE_URL=SERVER_URL, SMTP_USER="monitor", SMTP_PASSWORD=SMTP_PASSWORD
    )
    assert {DB_PASSWORD, SMTP_PASSWORD} <= set(settings.secrets)
    assert load(tmp_path).secrets == ()


def test_redact_url_masks_the_password(tmp_path):
    settings = load(tmp_path, VM_DATABASE_URL=SERVER_URL)
    assert settings.monitor().database_url == SERVER_URL
    assert (
        redact_url(settings.monitor().database_url)
        == "postgresql+psycopg2://vm:***@db.example.com:5432/events"
    )
    assert redact_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert redact_url("https://user@mlflow.example.com") == "https://user@mlflow.example.com"


def test_tracking_store_password_and_url_encodings_are_secrets(tmp_path):
    settings = load(
        tmp_path,
        VM_DATABASE_URL="postgresql://vm:p%40ss%20w0rd%21@db/events",
        MLFLOW_TRACKING_URI="https://ops:Track%2FPw@mlflow.example.com",
    )
    assert {"p@ss w0rd!", "Track/Pw", "Track%2FPw"} <= set(settings.secrets)
    rendered = redact_url(settings.monitor().database_url)
    assert "w0rd" not in rendered and rendered.endswith(":***@db/events")
    for written in (settings.monitor().database_url, settings.tracking_uri):
        assert "w0rd" not in mask(written, settings.secrets)
        assert "Track" not in mask(written, settings.secrets)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "databricks", "postgresql://u@h/mlflow"])
def test_other_tracking_uris_are_kept_as_given(tmp_path, uri):
    assert load(tmp_path, MLFLOW_TRACKING_URI=uri).tracking_uri == uri
    assert load(tmp_path, MLFLOW_TRACKING_URI=uri).artifact_dir is None


def test_smtp_host_without_recipients_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="SMTP_HOST is set but ALERT_TO is empty"):
        load(tmp_path, SMTP_HOST="smtp.example.com")


def read_log(path: Path) -> str:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


def test_setup_logging_masks_secrets_in_console_and_file(tmp_path, capsys, restore_logging):
    settings = load(
        tmp_path, VM_DATABASE_URL=SERVER_URL, SMTP_USER="monitor", SMTP_PASSWORD=SMTP_PASSWORD
    )
    log_file = tmp_path / "logs" / "vm.log"
    setup_logging(log_file, "INFO", settings.secrets)
    logger = logging.getLogger("volume_monitor.test_config")
    logger.info("db password %s and smtp password %s", DB_PASSWORD, SMTP_PASSWORD)
    logger.warning("inline " + SMTP_PASSWORD + " text")
    logger.debug("below the level %s", DB_PASSWORD)

    content = read_log(log_file)
    console = capsys.readouterr().err
    for text in (content, console):
        assert DB_PASSWORD not in text
        assert SMTP_PASSWORD not in text
        assert f"db password {MASK} and smtp password {MASK}" in text
        assert f"inline {MASK} text" in text
        assert "below the level" not in text
    assert "INFO volume_monitor.test_config" in content


def test_setup_logging_twice_does_not_duplicate_lines(tmp_path, restore_logging):
    log_file = tmp_path / "vm.log"
    setup_logging(log_file, "INFO", ())
    setup_logging(log_file, "INFO", ())
    logging.getLogger("volume_monitor.test_config").info("exactly once")
    assert read_log(log_file).count("exactly once") == 1


def test_setup_logging_masks_secrets_in_tracebacks(tmp_path, restore_logging):
    log_file = tmp_path / "vm.log"
    setup_logging(log_file, "INFO", (SMTP_PASSWORD,))
    try:
        raise RuntimeError(f"login failed with {SMTP_PASSWORD}")
    except RuntimeError:
        logging.getLogger("volume_monitor.test_config").exception("send failed")
    content = read_log(log_file)
    assert "RuntimeError" in content
    assert SMTP_PASSWORD not in content


def test_url_encoded_database_password_is_masked(tmp_path, restore_logging):
    settings = load(tmp_path, VM_DATABASE_URL="postgresql://vm:p%40ss%2Fword@db/events")
    log_file = tmp_path / "vm.log"
    setup_logging(log_file, "INFO", settings.secrets)
    logging.getLogger("volume_monitor.test_config").info("url %s", settings.monitor().database_url)
    content = read_log(log_file)
    assert "p%40ss%2Fword" not in content


def test_using_the_tracking_store_leaves_the_environment_alone(tmp_path, monkeypatch):
    from volume_monitor import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.client(load(tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/store/mlflow.db"))
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_every_setting_is_documented_in_the_env_example():
    from conftest import ROOT

    text = (ROOT / ".env.example").read_text()
    documented = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line
                  and not line.startswith("#")}  # fmt: skip
    assert documented == set(DEFAULTS)


def test_an_env_file_that_is_a_folder_or_not_utf8_is_one_line(tmp_path):
    folder = tmp_path / "as-folder"
    (folder / ".env").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"\.env is a folder, not a settings file"):
        load_settings(env_file=folder / ".env", environ={})
    latin = tmp_path / "latin.env"
    latin.write_bytes("ALERT_FROM=météo@example.com\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=latin, environ={})
    assert str(caught.value) == f"{latin} is not UTF-8 text (byte 12); save it as UTF-8"
    bom = tmp_path / "bom.env"
    bom.write_bytes("\ufeffVM_WORKERS=3\n".encode())
    assert load_settings(env_file=bom, environ={}).workers == 3


def test_deploy_with_a_folder_for_env_exits_1_in_one_line(tmp_path):
    from conftest import error_lines, run

    (tmp_path / ".env").mkdir()
    result = run("deploy.py", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert error_lines(result.stderr)[-1].endswith(".env is a folder, not a settings file")


def test_a_password_with_a_bare_at_sign_is_refused_without_showing_it(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, VM_DATABASE_URL="postgresql://vm:Pa@ss-word-9@db.example.com/events")
    assert str(caught.value) == (
        "VM_DATABASE_URL: the user or password holds an '@'; write it as %40"
    )
    encoded = load(tmp_path, VM_DATABASE_URL="postgresql://vm:Pa%40ss@db.example.com/events")
    assert "Pa@ss" in encoded.secrets
    assert load(tmp_path, VM_DATABASE_URL="sqlite:////srv/a@b/events.db").monitor()
