"""The configuration checked end to end: each part a nightly run needs (database, query, MLflow
store, model, results and log folders, SMTP, every alert channel) is tried for real and
reported as one line.

An alert channel is checked without making a message for people: it gets a payload its
service refuses or ignores (an empty Slack message, an empty Teams card, a PagerDuty event
without its payload, an Alertmanager notice with no alerts), and its answer says whether the
endpoint is reachable and its token accepted. Each distinct endpoint is checked once, naming
the monitors that use it, its host and never its path or key.

A failure in one check never stops the others. A check that needs another one (the query
needs the database, the model needs the MLflow store) is reported as not run when that one
failed, so the first broken piece is the one to fix. Passwords never appear in a detail.
"""

from __future__ import annotations

import smtplib
import ssl
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from volume_monitor import clock, db, freshness, state, tracking
from volume_monitor.alerting.channels import http
from volume_monitor.alerting.channels.email import smtp_reason
from volume_monitor.config import (
    CHANNELS,
    DEFAULT_MONITOR,
    MonitorSpec,
    Settings,
    SmtpSettings,
    endpoint_label,
    redact_url,
)
from volume_monitor.errors import AlertDeliveryError, VolumeMonitorError
from volume_monitor.logs import mask

SMTP_TIMEOUT = 10.0
FAILURES = (VolumeMonitorError, SQLAlchemyError, OSError, smtplib.SMTPException)
PROBES_AT_ONCE = 8  # channel endpoints checked at the same time
MONITORS_NAMED = 6  # monitors listed on a channel's line; the rest are counted
PROBE_KEY = "volume-monitor/doctor"  # the webhook probe's groupKey and Idempotency-Key
# Slack's answers for a webhook that is refused or gone (any status): the others to an empty
# message (400 no_text, invalid_payload, missing_text_or_fallback_or_attachments) mean the
# webhook is live and took the request.
SLACK_REFUSALS = (
    "invalid_token", "no_service", "no_team", "team_disabled", "no_active_hooks",
    "channel_not_found", "channel_is_archived", "user_not_found", "action_prohibited",
    "posting_to_general_channel_denied",
)  # fmt: skip


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
        *_channel_checks(settings, settings.selected(names)),
    ]
    return [replace(c, detail=mask(c.detail, settings.secrets)) for c in checks]


def _monitor_checks(settings: Settings, monitor: MonitorSpec, store: Check) -> list[Check]:
    """The database, the query and the production model of one monitor; the checks of a
    monitor other than ``default`` are named after it (``orders: query``)."""
    prefix = "" if monitor.name == DEFAULT_MONITOR else f"{monitor.name}: "
    found: dict[str, list[str]] = {}
    database = _attempt(prefix + "database", lambda: _database(settings, monitor))
    query = _attempt(prefix + "query", lambda: _query(settings, monitor, database.ok, found))
    if store.ok:
        model = _attempt(prefix + "model", lambda: _model(settings, monitor, found))
    else:
        model = _not_run(prefix + "model", store)
    if monitor.freshness_path is None and not monitor.freshness_column:
        return [database, query, model]
    latest = _attempt(prefix + "freshness", lambda: _freshness(settings, monitor, query, found))
    return [database, query, model, latest]


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


def _database(settings: Settings, monitor: MonitorSpec) -> str:
    safe = redact_url(monitor.database_url)
    engine = _engine(settings, monitor)
    try:
        with engine.connect():
            return f"{safe} reachable"
    except SQLAlchemyError as exc:
        raise _Broken(f"cannot reach {safe}: {_reason(exc)}") from None
    finally:
        engine.dispose()


def _engine(settings: Settings, monitor: MonitorSpec):
    """The monitor's database, read-only, with the run's connect and query deadlines."""
    return db.make_engine(
        monitor.database_url,
        connect_timeout=settings.connect_timeout,
        query_timeout=settings.query_timeout,
    )


def _query(settings: Settings, monitor: MonitorSpec, database_ok: bool, found: dict) -> str:
    """Run the query for yesterday: its result must honour the column contract. The
    dimensions it returns are kept in ``found`` for the model check."""
    name = monitor.query_path.name
    query = db.read_query(monitor.query_path)
    if not database_ok:
        raise _Broken(f"{name} not run: the database check failed")
    day = clock.yesterday(settings)
    engine = _engine(settings, monitor)
    latest = db.Latest(monitor.freshness_column) if monitor.freshness_column else None
    try:
        frame = db.fetch(engine, query, day, clock.today(settings), monitor.dimensions, latest)
    finally:
        engine.dispose()
    found["latest"] = latest
    dimensions = db.dimensions_of(frame.columns)
    found["dimensions"] = dimensions
    rows = f"{len(frame)} row{'s' if len(frame) > 1 else ''}" if len(frame) else "no rows"
    return f"{name}: columns match ({', '.join(dimensions)}), {rows} for {day}"


def _freshness(settings: Settings, monitor: MonitorSpec, query: Check, seen: dict) -> str:
    """Yesterday's latest event, from the freshness column the query check read or from the
    freshness query run now: a time (or nothing, for a day without events); a late day is
    reported, not failed: the data is late, not the set-up."""
    day = clock.yesterday(settings)
    if monitor.freshness_column:
        if not query.ok:
            raise _Broken(f"{monitor.freshness_column} not read: the query check failed")
        name = f"column {monitor.freshness_column}"
        found = freshness.of_value(seen["latest"].value, monitor, day, settings.timezone)
    else:
        name = monitor.freshness_path.name
        engine = _engine(settings, monitor)
        try:
            found = freshness.read(engine, monitor, day, settings.timezone)
        finally:
            engine.dispose()
    if found.latest is None:
        return f"{name}: no events on {day}"
    verdict = found.reason() if found.late else "complete"
    return f"{name}: the latest event of {day} is at {found.latest:%H:%M:%S} ({verdict})"


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


# --- alert channels ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One distinct place alerts go over HTTP, and the monitors whose routes lead there."""

    channel: str
    url: str = field(repr=False)  # a secret: the webhook URL, or PagerDuty's events URL
    key: str = field(repr=False)  # PagerDuty's routing key, a secret; empty for the others
    monitors: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    """A receiver's answer to a probe: its status, and ``text`` as quoted in a check."""

    status: int
    text: str  # e.g. ``400 Bad Request: no_text``

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    def says(self, *words: str) -> bool:
        return any(word in self.text.lower() for word in words)


def _channel_checks(settings: Settings, monitors: Sequence[MonitorSpec]) -> list[Check]:
    """One check per distinct endpoint of the monitors' Slack, Teams, webhook and PagerDuty
    routes (email is the SMTP check), probed a few at a time."""
    endpoints = _endpoints(monitors)
    shared = Counter(endpoint.channel for endpoint in endpoints)
    with ThreadPoolExecutor(max_workers=PROBES_AT_ONCE) as pool:
        return list(
            pool.map(lambda e: _channel_check(settings, e, shared[e.channel] > 1), endpoints)
        )


def _endpoints(monitors: Sequence[MonitorSpec]) -> list[Endpoint]:
    """The distinct (channel, endpoint, target) of the monitors' routes, in channel order."""
    users: dict[tuple[str, str, str], list[str]] = {}
    for monitor in monitors:
        for route in monitor.routes:
            if route.channel in JUDGES:
                key = (route.channel, route.endpoint, route.target)
                users.setdefault(key, []).append(monitor.name)
    endpoints = []
    for channel, endpoint, target in sorted(users, key=lambda key: CHANNELS.index(key[0])):
        url, key = (endpoint, target) if channel == "pagerduty" else (target, "")
        endpoints.append(Endpoint(channel, url, key, tuple(users[(channel, endpoint, target)])))
    return endpoints


def _channel_check(settings: Settings, endpoint: Endpoint, several: bool) -> Check:
    """The check of one endpoint, named after its channel (and, when the channel has several
    endpoints, after its first monitor); its detail names the host and every monitor."""
    name = endpoint.channel
    if several:
        others = len(endpoint.monitors) - 1
        name = f"{endpoint.monitors[0]}{f' +{others}' if others else ''}: {name}"
    check = _attempt(name, lambda: _probe(settings, endpoint))
    where = f"{endpoint_label(endpoint.url)} for {_listed(endpoint.monitors)}"
    return replace(check, detail=f"{where}: {check.detail}")


def _probe(settings: Settings, endpoint: Endpoint) -> str:
    """POST the channel's harmless payload and judge the answer: what was found, or raise."""
    payload, headers = _payload(settings, endpoint)
    answer = _post(endpoint.url, payload, settings.http_timeout, headers)
    return JUDGES[endpoint.channel](answer)


def _payload(settings: Settings, endpoint: Endpoint) -> tuple[dict[str, Any], dict[str, str]]:
    """What the channel's service refuses or ignores, and the request's extra headers."""
    if endpoint.channel == "slack":
        return {}, {}
    if endpoint.channel == "teams":
        return {"type": "message", "attachments": []}, {}
    if endpoint.channel == "pagerduty":  # no payload: never a complete event, never an incident
        return {"routing_key": endpoint.key, "event_action": "trigger"}, {}
    notice = {
        "version": "4", "receiver": "volume-monitor", "status": "resolved",
        "groupKey": PROBE_KEY, "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": settings.base_url, "alerts": [], "test": True,
    }  # fmt: skip
    return notice, {"Idempotency-Key": PROBE_KEY}


def _post(url: str, payload: Any, timeout: float, headers: dict[str, str]) -> Answer:
    """POST ``payload``; the answer whatever its status (no answer: one line, no URL)."""
    try:
        response = http.post(url, payload, timeout, headers)
    except AlertDeliveryError as exc:
        raise _Broken(str(exc)) from None
    return Answer(response.status_code, http.answer_text(response))


def _judge_slack(answer: Answer) -> str:
    if answer.accepted:
        return f"accepted: answered {answer.text} (an empty message may have been posted)"
    if answer.status == 400 and not answer.says(*SLACK_REFUSALS):
        return f"reachable, webhook accepted: answered {answer.text} to an empty message"
    if answer.status in (400, 403, 404, 410):
        raise _Broken(f"webhook refused or gone: answered {answer.text}")
    raise _Broken(f"failing: answered {answer.text}")


def _judge_teams(answer: Answer) -> str:
    if answer.accepted:
        return f"accepted: answered {answer.text} (the workflow may run with nothing to post)"
    if answer.status == 400:
        return f"reachable, not refused: answered {answer.text} to an empty card"
    if 400 < answer.status < 500:
        raise _Broken(f"workflow refused: answered {answer.text}")
    raise _Broken(f"failing: answered {answer.text}")


def _judge_pagerduty(answer: Answer) -> str:
    if answer.accepted:
        return f"accepted: answered {answer.text} (look for an empty alert in PagerDuty)"
    if answer.status == 400 and answer.says("routing_key", "routing key"):
        raise _Broken(f"routing key refused: answered {answer.text}")
    if answer.status == 400:
        unverified = "routing key not verifiable without an incident"
        return f"reachable, {unverified}: answered {answer.text}"
    if answer.status in (401, 403, 404):
        raise _Broken(f"refused: answered {answer.text}")
    raise _Broken(f"failing: answered {answer.text}")


def _judge_webhook(answer: Answer) -> str:
    if answer.accepted:
        return f"accepted: answered {answer.text}"
    raise _Broken(f"failing: answered {answer.text}")


JUDGES: dict[str, Callable[[Answer], str]] = {
    "slack": _judge_slack,
    "teams": _judge_teams,
    "webhook": _judge_webhook,
    "pagerduty": _judge_pagerduty,
}


def _listed(monitors: Sequence[str]) -> str:
    """``a, b, c``; past ``MONITORS_NAMED`` names, ``a, …, f and 3 more``."""
    shown = ", ".join(monitors[:MONITORS_NAMED])
    rest = len(monitors) - MONITORS_NAMED
    return f"{shown} and {rest} more" if rest > 0 else shown
