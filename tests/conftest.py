"""Shared fixtures: real databases (a SQLite file, the machine's PostgreSQL and MariaDB), a
real SMTP server (aiosmtpd on 127.0.0.1), and a throwaway MLflow SQLite store per test.

PostgreSQL and MariaDB tests run in a schema / database private to the test session, skip with
the reason when the server is unreachable, and fail instead when VM_REQUIRE_SERVICES=1 (as in
CI).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from volume_monitor.config import Settings, load_settings
from volume_monitor.demo import DemoSpec, default_faults, write_demo
from volume_monitor.logs import remove_handlers

ROOT = Path(__file__).resolve().parent.parent
QUERY = ROOT / "sql" / "daily_volume.sql"
REQUIRE_SERVICES = os.environ.get("VM_REQUIRE_SERVICES") == "1"
SERVER_URLS = {
    "postgresql": os.environ.get(
        "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}

# A small, fixed history: 100 days ending LAST_DAY with the demo's faults (a duplicated load
# of channel web on LAST_DAY, mobile/Android stalled 14 days before, a missing day 30 days
# before, a duplicated load of mobile 60 days before).
LAST_DAY = dt.date(2026, 6, 30)
HISTORY_DAYS = 100
FIRST_DAY = LAST_DAY - dt.timedelta(days=HISTORY_DAYS - 1)
STALL_DAY = LAST_DAY - dt.timedelta(days=14)
MISSING_DAY = LAST_DAY - dt.timedelta(days=30)


def small_spec(**changes) -> DemoSpec:
    values = {"days": HISTORY_DAYS, "events_per_day": 1500, "seed": 11}
    values.update(changes)
    return DemoSpec(LAST_DAY, faults=default_faults(LAST_DAY), **values)


def server_url(kind: str) -> str:
    """The URL of a private schema (PostgreSQL) or database (MariaDB) for this test session on
    a running server, so concurrent test runs never share tables; skip (or fail when services
    are required) when the server is unreachable."""
    if kind not in _private_urls:
        try:
            _private_urls[kind] = _create_private(kind, SERVER_URLS[kind])
        except Exception as exc:  # any failure means the server is not usable here
            reason = f"{kind} is not reachable at {SERVER_URLS[kind]}: {str(exc).splitlines()[0]}"
            if REQUIRE_SERVICES:
                pytest.fail(reason + " (VM_REQUIRE_SERVICES=1)")
            pytest.skip(reason)
    return _private_urls[kind]


_private_urls: dict[str, str] = {}
PRIVATE_NAME = f"vm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"


CONTAINER = {"postgresql": "SCHEMA", "mariadb": "DATABASE"}  # what holds the private tables


@contextmanager
def postgresql_schema(prefix: str) -> Iterator[str]:
    """The URL of a PostgreSQL schema of its own on the machine's server, dropped afterwards
    (skips, or fails when services are required, if PostgreSQL is down)."""
    server_url("postgresql")
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _as_admin("postgresql", f"CREATE SCHEMA {schema}")
    url = make_url(SERVER_URLS["postgresql"]).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        _as_admin("postgresql", f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _create_private(kind: str, url: str) -> str:
    _as_admin(kind, f"CREATE {CONTAINER[kind]} {PRIVATE_NAME}")
    parsed = make_url(url)
    if kind == "postgresql":
        private = parsed.update_query_dict({"options": f"-csearch_path={PRIVATE_NAME}"})
    else:
        private = parsed.set(database=PRIVATE_NAME)
    return private.render_as_string(hide_password=False)


def _as_admin(kind: str, statement: str) -> None:
    engine = create_engine(SERVER_URLS[kind], isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


def pytest_collection_modifyitems(items):
    """The slow scenarios first, then the files with the most tests: with one worker per core
    (``make test``, which keeps this order with ``--no-loadscope-reorder``), the longest file
    runs beside the others instead of after them all."""
    per_file = Counter(item.nodeid.split("::")[0] for item in items)
    items.sort(
        key=lambda item: (
            item.get_closest_marker("slow") is None,
            -per_file[item.nodeid.split("::")[0]],
        )
    )


def pytest_sessionfinish(session, exitstatus):
    """Drop the private schemas and databases this session created."""
    for kind in list(_private_urls):
        cascade = " CASCADE" if kind == "postgresql" else ""
        _as_admin(kind, f"DROP {CONTAINER[kind]} IF EXISTS {PRIVATE_NAME}{cascade}")
        del _private_urls[kind]


@pytest.fixture(autouse=True)
def _logging_handlers_removed():
    """Commands run in-process attach handlers to the stderr of the test that ran them; remove
    them afterwards, so later log records never reach a closed capture stream."""
    yield
    remove_handlers()


def database_url_for(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return server_url(kind)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_database_url(request, tmp_path) -> str:
    """An empty database of each kind in turn."""
    return database_url_for(request.param, tmp_path)


def settings_in(folder: Path, **env: str) -> Settings:
    """Settings whose every path lies in ``folder``, with ``env`` on top; no .env is read."""
    values = {
        "VM_DATABASE_URL": f"sqlite:///{folder / 'events.db'}",
        "VM_QUERY": str(QUERY),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        "VM_RESULTS_DIR": str(folder / "results"),
        "VM_LOG_FILE": str(folder / "logs" / "volume-monitor.log"),
        "VM_STATE_URL": f"sqlite:///{folder / 'state' / 'volume-monitor.db'}",
    }
    values.update(env)
    return load_settings(env_file=folder / "absent.env", environ=values)


@pytest.fixture(scope="session")
def demo_sqlite(tmp_path_factory) -> Path:
    """A SQLite file with the small demo history, written once per session (read-only use)."""
    path = tmp_path_factory.mktemp("demo") / "events.db"
    write_demo(create_engine(f"sqlite:///{path}"), small_spec())
    return path


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory, demo_sqlite) -> Path:
    """A folder whose MLflow store holds version 1, promoted, trained on ``demo_sqlite``.
    Tests copy it (see ``trained_settings``) so they never change it."""
    from volume_monitor import jobs

    folder = tmp_path_factory.mktemp("trained")
    settings = settings_in(folder, VM_DATABASE_URL=f"sqlite:///{demo_sqlite}")
    jobs.train(settings, FIRST_DAY, LAST_DAY + dt.timedelta(days=1), promote=True)
    return folder


def copy_trained(trained_store: Path, folder: Path) -> None:
    """Copy the trained MLflow store and the state store it seeded into ``folder``."""
    shutil.copytree(trained_store / "mlruns", folder / "mlruns")
    shutil.copytree(trained_store / "state", folder / "state")


@pytest.fixture
def trained_settings(trained_store, demo_sqlite, tmp_path):
    """Settings on a private copy of the trained MLflow store; ``env`` overrides settings."""

    copy_trained(trained_store, tmp_path)

    def make(**env: str) -> Settings:
        return settings_in(tmp_path, **{"VM_DATABASE_URL": f"sqlite:///{demo_sqlite}", **env})

    return make


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every message it receives, refuses the addresses in
    ``refuse``, and accepts a login only with ``PASSWORD`` (recording every attempt). Once it
    has kept a message it answers 250, or, with ``then`` set, ``"drop"``s the connection
    without answering or ``"hang"``s without a word."""

    PASSWORD = "right-password"
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    logins: list[tuple[str, str]] = field(default_factory=list)
    then: str = "answer"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        )
        if self.then == "drop":
            server.transport.close()
        elif self.then == "hang":
            import asyncio

            await asyncio.sleep(600)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        # handled=False: aiosmtpd itself answers 235, or 535 on a wrong password.
        return AuthResult(success=password == self.PASSWORD, handled=False)


def chromium_executable() -> str:
    """Debian's chromium; the test is skipped with the reason without it, and fails instead
    when VM_REQUIRE_SERVICES=1 (CI installs it in ``.ci/run``)."""
    executable = shutil.which("chromium")
    if executable is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(reason + " (VM_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    return executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1; yields (port, inbox)."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=free_port(),
        authenticator=inbox.authenticate, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


@dataclass
class Request:
    """One request a :class:`Receiver` got: its path, headers, JSON body, and the status it
    answered (None: it never answered)."""

    path: str
    headers: dict[str, str]
    body: object
    status: int | None


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST. Each path answers
    ``statuses[path]`` (default 200, Teams' and PagerDuty's 202 where the path says so);
    a path in ``silent`` reads the request and never answers."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answered(self, path: str) -> list[object]:
        """The JSON bodies ``path`` received and accepted (2xx), in order."""
        return [r.body for r in self.requests if r.path == path and r.status and r.status < 300]


@pytest.fixture
def receiver():
    """A :class:`Receiver` running for the test."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = Receiver()
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            if self.path in state.silent:
                state.requests.append(Request(self.path, dict(self.headers), body, None))
                stop.wait(120)
                return
            status = state.statuses.get(self.path, 202 if "202" in self.path else 200)
            state.requests.append(Request(self.path, dict(self.headers), body, status))
            answer = b"ok" if status < 300 else b'{"error": "receiver says no"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port():
    """A TCP server on 127.0.0.1 that accepts connections and never says a word; yields its
    port."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop, accepted = threading.Event(), []

    def accept():
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB file system, all but 16 KB of it taken."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    (mount / "filler").write_bytes(b"\0" * (240 * 1024))
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def smtp_env(port: int, to: str = "oncall@example.com") -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "ALERT_TO": to,
        "ALERT_FROM": "monitor@example.com",
        "SMTP_TIMEOUT": "5",
    }


# --- the scripts as cron runs them ------------------------------------------------------

SETTING_PREFIXES = ("VM_", "SMTP_", "ALERT_", "MLFLOW_")


def clean_environment() -> dict[str, str]:
    """This process's environment without any setting of the monitor, MLflow or SMTP."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}


def run(script: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env={**clean_environment(), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def start(script: str, *args: str, cwd: Path, **env: str) -> subprocess.Popen:
    """``script`` started in the background, as :func:`run` would run it."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *args], cwd=cwd,
        env={**clean_environment(), **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line or "error:" in line]


@pytest.fixture
def workdir(tmp_path, demo_sqlite) -> Path:
    """An install-like folder: relative default paths, the demo database under data/."""
    return new_install(tmp_path, demo_sqlite)


def new_install(folder: Path, demo_sqlite: Path, trained_store: Path | None = None) -> Path:
    """``folder`` made an install: the demo database under data/, the query under sql/, and
    a copy of ``trained_store``'s MLflow and state stores when given."""
    (folder / "data").mkdir()
    shutil.copy(demo_sqlite, folder / "data" / "demo.db")
    (folder / "sql").mkdir()
    shutil.copy(QUERY, folder / "sql" / QUERY.name)
    if trained_store is not None:
        copy_trained(trained_store, folder)
    return folder


@pytest.fixture
def trained_workdir(workdir, trained_store) -> Path:
    """``workdir`` with a copy of the session's trained MLflow store (version 1 promoted) and
    state store."""
    copy_trained(trained_store, workdir)
    return workdir


@pytest.fixture(scope="session")
def scored_install(tmp_path_factory, demo_sqlite, trained_store) -> Path:
    """An install-like folder (demo database, query, trained store) whose ``LAST_DAY`` was
    scored once by a dry run: the results that a bad run must leave alone."""
    folder = new_install(tmp_path_factory.mktemp("scored"), demo_sqlite, trained_store)
    scored = run("deploy.py", "--date", str(LAST_DAY), "--dry-run", cwd=folder)
    assert scored.returncode == 0, scored.stderr
    return folder


@pytest.fixture
def install(scored_install, tmp_path) -> Path:
    """A private copy of ``scored_install``."""
    copy = tmp_path / "install"
    shutil.copytree(scored_install, copy)
    return copy


def results_of(install: Path) -> dict[str, bytes]:
    """Every file under results/, by relative path."""
    results = install / "results"
    return {
        str(path.relative_to(results)): path.read_bytes()
        for path in sorted(results.rglob("*"))
        if path.is_file() and not path.name.startswith(".volume-monitor.lock")
    }


def log_of(install: Path) -> str:
    return (install / "logs" / "volume-monitor.log").read_text()


def outbox(folder: Path) -> list:
    """Every delivery in the state store of an install-like ``folder``, oldest first."""
    from volume_monitor import state

    with state.open_store(f"sqlite:///{folder / 'state' / 'volume-monitor.db'}") as store:
        return store.undelivered("email", dt.date(2000, 1, 1), dt.date(2100, 1, 1)) + [
            d
            for day in store.days("default", dt.date(2000, 1, 1), dt.date(2100, 1, 1))
            if (d := store.delivery("default", day.date, "email", "alert")) and d.status == "sent"
        ]
