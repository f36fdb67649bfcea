"""The MLflow UI is where a person picks the production model: a real ``mlflow server`` on the
job's SQLite store shows the training runs and registered versions, an alias set through its
REST API (as the UI's "Add alias" does) is what the next cron run of deploy.py loads."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import FIRST_DAY, LAST_DAY, QUERY, ROOT, free_port
from volume_monitor import jobs

SETTING_PREFIXES = ("VM_", "SMTP_", "ALERT_", "MLFLOW_")
START_TIMEOUT = 60.0


def clean_environ(**env: str) -> dict[str, str]:
    """The process environment without any setting of the job or MLflow, plus ``env``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    return {**kept, **env}


def server_command(settings, port: int) -> list[str]:
    """``mlflow server`` on the job's store, with artifacts where the job writes them (the
    experiment's own artifact location, ``<store dir>/artifacts``), read locally, not proxied."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", settings.tracking_uri,
        "--default-artifact-root", settings.artifact_dir.as_uri(),
        "--no-serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


@pytest.fixture
def mlflow_server(tmp_path):
    """Start ``mlflow server`` for given settings; yields a function returning its base URL.
    The whole process group is killed at teardown."""
    started: list[subprocess.Popen] = []
    log_path = tmp_path / "mlflow-server.log"

    def start(settings) -> str:
        port = free_port()
        command = server_command(settings, port)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command,
                cwd=tmp_path,
                env=clean_environ(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        return base
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        pytest.fail(f"mlflow server did not answer /health in {START_TIMEOUT:.0f}s:\n"
                    f"{log_path.read_text()}")  # fmt: skip

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=15)


def call(base: str, method: str, path: str, body: dict | None = None, **query: str) -> dict:
    """One REST call to the MLflow server; the decoded JSON answer."""
    url = f"{base}/api/2.0/mlflow/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        pytest.fail(f"{method} {url} answered {exc.code}: {exc.read().decode(errors='replace')}")


def deploy_like_cron(settings, day: dt.date, cwd: Path) -> subprocess.CompletedProcess:
    env = clean_environ(
        VM_DATABASE_URL=settings.monitor().database_url,
        VM_QUERY=str(QUERY),
        MLFLOW_TRACKING_URI=settings.tracking_uri,
        VM_RESULTS_DIR=str(settings.results_dir),
        VM_LOG_FILE=str(settings.log_file),
    )
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy.py"), "--dry-run", "--date", str(day)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_alias_set_in_mlflow_ui_is_what_the_next_deploy_loads(
    trained_settings, mlflow_server, tmp_path
):
    settings = trained_settings()
    second = jobs.train(settings, FIRST_DAY, LAST_DAY + dt.timedelta(days=1))
    assert second.version == "2" and not second.promoted
    name = settings.monitor().model_name

    base = mlflow_server(settings)

    before = call(base, "GET", "registered-models/alias", name=name, alias="production")
    assert before["model_version"]["version"] == "1"

    # What the UI's "Add alias" on version 2 sends.
    alias = {"name": name, "alias": "production", "version": "2"}
    call(base, "POST", "registered-models/alias", alias)

    after = call(base, "GET", "registered-models/alias", name=name, alias="production")
    assert after["model_version"]["version"] == "2"
    assert after["model_version"]["run_id"] == second.run_id
    assert "production" in after["model_version"]["aliases"]

    model = call(base, "GET", "registered-models/get", name=name)["registered_model"]
    assert model["aliases"] == [{"alias": "production", "version": "2"}], "the alias moved"

    by_name = {"experiment_name": settings.monitor().experiment}
    experiment = call(base, "GET", "experiments/get-by-name", **by_name)["experiment"]
    # The location the job gave the experiment, read in place by the server (no proxy).
    assert experiment["artifact_location"].startswith("file:///")
    assert experiment["artifact_location"].endswith("/mlruns/artifacts")
    search = {"experiment_ids": [experiment["experiment_id"]], "max_results": 100}
    runs = {run["info"]["run_id"]: run for run in call(base, "POST", "runs/search", search)["runs"]}
    assert len(runs) == 2 and second.run_id in runs
    metrics = {m["key"]: m["value"] for m in runs[second.run_id]["data"]["metrics"]}
    assert metrics["rows"] == second.rows
    assert 0.0 <= metrics["bench_series_f1"] <= 1.0
    assert "bench_false_alerts_per_30_days" in metrics

    deployed = deploy_like_cron(settings, LAST_DAY, cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    assert "Traceback" not in deployed.stderr
    summary = json.loads(
        (settings.results_dir / "default" / str(LAST_DAY) / "summary.json").read_text()
    )
    assert summary["model_version"] == "2"
    assert summary["run_id"] == second.run_id
    assert summary["model_uri"] == f"models:/{name}@production"
