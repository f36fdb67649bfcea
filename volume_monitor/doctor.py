"""The configuration checked end to end: each part a nightly run needs (database, query, MLflow
store, model, results and log folders, SMTP) is tried for real and reported as one line.

A failure in one check never stops the others. A check that needs another one (the query
needs the database, the model needs the MLflow store) is reported as not run when that one
failed, so the first broken piece is the one to fix. Passwords never appear in a detail.
"""

from __future__ import annotations

import smtplib
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from volume_monitor import clock, db, state, tracking
from volume_monitor.alerting.channels.email import smtp_reason
from volume_monitor.config import DEFAULT_MONITOR, MonitorSpec, Settings, SmtpSettings, redact_url
from volume_monitor.errors import VolumeMonitorError
from volume_monitor.logs import mask

SMTP_TIMEOUT = 10.0
FAILURES = (VolumeMonitorError, SQLAlchemyError, OSError, smtplib.SMTPException)


@dataclass(frozen=True)
class Check:
    """One part of the configuration: whether it works, and what was found or why not."""

    name: str
    ok: bool
    detail: str


def run_checks(
    settings: Settings, smtp_login: bool = True, names: list[str] | None = None
) -> list[Check]:
    """Check every part of the configuration, for the monitors ``names`` (default: all);
    ``smtp_login`` false leaves the SMTP server uncontacted (its settings are still
    reported)."""
    store = _attempt("mlflow", lambda: _store(settings))
    checks = []
    for monitor in settings.selected(names):
        checks += _monitor_checks(settings, monitor, store)
    checks += [
        store,
        _attempt("state", lambda: _state(settings)),
        _attempt("results", lambda: _writable(settings.results_dir)),
        _attempt("log", lambda: _writable(settings.log_file.parent)),
        _attempt("smtp", lambda: _smtp(settings.smtp, smtp_login)),
    ]
    return [replace(c, detail=mask(c.detail, settings.secrets)) for c in checks]


def _monitor_checks(settings: Settings, monitor: MonitorSpec, store: Check) -> list[Check]:
    """The database, the query and the production model of one monitor; the checks of a
    monitor other than ``default`` are named after it (``orders: query``)."""
    prefix = "" if monitor.name == DEFAULT_MONITOR else f"{monitor.name}: "
    found: dict[str, list[str]] = {}
    database = _attempt(prefix + "database", lambda: _database(monitor))
    query = _attempt(prefix + "query", lambda: _query(settings, monitor, database.ok, found))
    if store.ok:
        model = _attempt(prefix + "model", lambda: _model(settings, monitor, found))
    else:
        model = _not_run(prefix + "model", store)
    return [database, query, model]


def format_report(checks: list[Check]) -> str:
    """One aligned line per check: ``ok`` or ``FAIL``, its name, its detail."""
    width = max((len(c.name) for c in checks), default=0)
    return "\n".join(f"{'ok' if c.ok else 'FAIL':<6}{c.name:<{width}}  {c.detail}" for c in checks)


class _Broken(Exception):
    """A check found its part unusable; the message says why."""


def _attempt(name: str, check: Callable[[], str]) -> Check:
    """Run ``check``, which returns what it found or raises; a known failure becomes one line."""
    try:
        return Check(name, True, _one_line(check()))
    except _Broken as exc:
        return Check(name, False, _one_line(str(exc)))
    except FAILURES as exc:
        return Check(name, False, _one_line(_reason(exc)))


def _not_run(name: str, needed: Check) -> Check:
    return Check(name, False, f"not run: the {needed.name} check failed")


def _database(monitor: MonitorSpec) -> str:
    safe = redact_url(monitor.database_url)
    engine = db.make_engine(monitor.database_url)
    try:
        with engine.connect():
            return f"{safe} reachable"
    except SQLAlchemyError as exc:
        raise _Broken(f"cannot reach {safe}: {_reason(exc)}") from None
    finally:
        engine.dispose()


def _query(settings: Settings, monitor: MonitorSpec, database_ok: bool, found: dict) -> str:
    """Run the query for yesterday: its result must honour the column contract. The
    dimensions it returns are kept in ``found`` for the model check."""
    name = monitor.query_path.name
    query = db.read_query(monitor.query_path)
    if not database_ok:
        raise _Broken(f"{name} not run: the database check failed")
    day = clock.yesterday(settings)
    engine = db.make_engine(monitor.database_url)
    try:
        frame = db.fetch(engine, query, day, clock.today(settings), monitor.dimensions)
    finally:
        engine.dispose()
    dimensions = db.dimensions_of(frame.columns)
    found["dimensions"] = dimensions
    rows = f"{len(frame)} row{'s' if len(frame) > 1 else ''}" if len(frame) else "no rows"
    return f"{name}: columns match ({', '.join(dimensions)}), {rows} for {day}"


def _store(settings: Settings) -> str:
    # Opening a missing local store would create an empty one instead of reporting the path.
    tracking.require_store(settings)
    mlflow_client = tracking.client(settings)
    with tracking.store_errors(settings):
        models = len(mlflow_client.search_registered_models())
    return f"{redact_url(settings.tracking_uri)} reachable, {models} registered model(s)"


def _model(settings: Settings, monitor: MonitorSpec, found: dict) -> str:
    """The production model loads, and was trained for this monitor, its query and the
    dimensions the query returns (when the query check found them)."""
    loaded = tracking.load_model(settings, None, monitor)
    problem = loaded.mismatch(monitor, found.get("dimensions", loaded.detector.dimensions))
    if problem:
        raise _Broken(f"{loaded.label} cannot score this monitor: {problem}")
    return f"{loaded.uri} is version {loaded.version} (run {loaded.run_id or 'unknown'}), loads"


def _state(settings: Settings) -> str:
    with state.open_store(settings.state_url) as store:
        return f"{redact_url(settings.state_url)} at schema revision {store.revision()}"


def _writable(folder: Path) -> str:
    """Create ``folder`` if needed, then write and delete a file in it."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-") as probe:
        probe.write(b"ok")
        probe.flush()
    return f"{folder} writable"


def _smtp(smtp: SmtpSettings, login: bool) -> str:
    if not smtp.configured:
        raise _Broken("SMTP_HOST or ALERT_TO not set: alerts are written to email.txt")
    address = f"{smtp.host}:{smtp.port}"
    if not login:
        return f"{address} not contacted; alerts go to {', '.join(smtp.recipients)}"
    try:
        with _connect(smtp) as server:
            if smtp.user:
                server.login(smtp.user, smtp.password)
    except (smtplib.SMTPException, OSError) as exc:
        who = f"log in as {smtp.user} at" if smtp.user else "connect to"
        raise _Broken(f"cannot {who} {address}: {_reason(exc)}") from None
    if smtp.user:
        return f"login as {smtp.user} at {address} ok"
    return f"connected to {address} ok (no login: SMTP_USER is empty)"


def _connect(smtp: SmtpSettings) -> smtplib.SMTP:
    """A connection to the SMTP server, encrypted as configured, greeted and ready to log in."""
    timeout = min(smtp.timeout, SMTP_TIMEOUT)
    if smtp.ssl:
        context = ssl.create_default_context()
        return smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
    server = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
    try:
        if smtp.starttls:
            server.starttls(context=ssl.create_default_context())
        server.ehlo()
    except BaseException:
        server.close()
        raise
    return server


def _reason(exc: BaseException) -> str:
    """The one-line cause of a failure: an SMTP reply, a driver error's first line, or the
    exception's own message."""
    if isinstance(exc, SQLAlchemyError):
        return db.first_line(exc)
    return smtp_reason(exc)


def _one_line(text: str) -> str:
    """The first non-blank line of ``text``."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
