"""Settings: the process environment, then ``.env``, then defaults, resolved once.

Every setting is read here and nowhere else. Relative paths (including the file of a
``sqlite:///`` URL) resolve against the working directory at load time, so a run started by
cron from the install directory behaves the same as one started by hand.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from volume_monitor.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULTS: dict[str, str] = {
    "VM_MONITORS": "",
    "VM_STATE_URL": "sqlite:///state/volume-monitor.db",
    "VM_WORKERS": "2",
    "VM_LOCK_WAIT": "3600",
    "VM_RUN_TIMEOUT": "7200",
    "VM_MAX_SERIES": "200000",
    "VM_DATABASE_URL": "sqlite:///data/demo.db",
    "VM_CONNECT_TIMEOUT": "30",
    "VM_QUERY_TIMEOUT": "1800",
    "VM_QUERY": "sql/daily_volume.sql",
    "MLFLOW_TRACKING_URI": "sqlite:///mlruns/mlflow.db",
    "VM_EXPERIMENT": "volume-monitor",
    "VM_MODEL_NAME": "volume-monitor",
    "VM_MODEL_ALIAS": "production",
    "VM_RESULTS_DIR": "results",
    "VM_LOG_FILE": "logs/volume-monitor.log",
    "VM_LOG_LEVEL": "INFO",
    "VM_ALERT_MIN_ANOMALIES": "1",
    "VM_ALERT_SHARE": "",
    "VM_ALERT_MIN_CHANGE": "0",
    "VM_ALERT_MIN_CHANGE_PCT": "0",
    "VM_ALERT_DIRECTION": "both",
    "VM_ALERT_BUDGET": "0.5",
    "VM_HOLIDAYS": "",
    "VM_FRESHNESS_QUERY": "",
    "VM_FRESHNESS_COLUMN": "",
    "VM_LATE_TOLERANCE_MINUTES": "60",
    "VM_SETTLE_HOURS": "0",
    "VM_TIMEZONE": "UTC",
    "VM_SCHEDULE": "30 6 * * *",
    "VM_CALENDAR": "",
    "VM_UA_CACHE": "data/user_agent_families.json",
    "SMTP_HOST": "",
    "SMTP_PORT": "",
    "SMTP_USER": "",
    "SMTP_PASSWORD": "",
    "SMTP_SSL": "false",
    "SMTP_STARTTLS": "false",
    "SMTP_TIMEOUT": "30",
    "ALERT_FROM": "volume-monitor@localhost",
    "ALERT_TO": "",
    "VM_EMAIL_MIN_SEVERITY": "warning",
    "VM_SLACK_WEBHOOK_URL": "",
    "VM_SLACK_MIN_SEVERITY": "warning",
    "VM_TEAMS_WEBHOOK_URL": "",
    "VM_TEAMS_MIN_SEVERITY": "warning",
    "VM_WEBHOOK_URL": "",
    "VM_WEBHOOK_MIN_SEVERITY": "warning",
    "VM_PAGERDUTY_ROUTING_KEY": "",
    "VM_PAGERDUTY_URL": "https://events.pagerduty.com/v2/enqueue",
    "VM_PAGERDUTY_MIN_SEVERITY": "warning",
    "VM_HTTP_TIMEOUT": "10",
    "VM_DELIVERY_TIMEOUT": "300",
    "VM_BASE_URL": "",
    "VM_WEB_TOKEN": "",
}

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how alert emails are sent. ``host`` empty means email is not configured."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    ssl: bool
    starttls: bool
    timeout: float
    sender: str
    recipients: tuple[str, ...]

    @property
    def configured(self) -> bool:
        return bool(self.host and self.recipients)


# How bad an alert is, least first: PagerDuty's names, which the other channels show as is.
SEVERITIES = ("warning", "error", "critical")
CHANNELS = ("email", "slack", "teams", "webhook", "pagerduty")
PAGERDUTY_EVENTS_URL = DEFAULTS["VM_PAGERDUTY_URL"]


@dataclass(frozen=True)
class Route:
    """Where a monitor's alerts go on one channel, from which severity: ``target`` is the
    webhook URL (Slack, Teams, webhook) or the PagerDuty routing key, a secret either way;
    ``endpoint`` is PagerDuty's events URL; ``recipients`` are the email's."""

    channel: str
    target: str = field(default="", repr=False)
    min_severity: str = "warning"
    endpoint: str = ""
    recipients: tuple[str, ...] = ()

    def takes(self, severity: str | None) -> bool:
        """Whether an alert of ``severity`` goes this way."""
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else 0
        return rank >= SEVERITIES.index(self.min_severity)

    @property
    def address(self) -> tuple[str, ...]:
        """Where a message goes: routes with the same address share one message a night."""
        return (self.channel, self.endpoint, self.target, *self.recipients)


DEFAULT_MONITOR = "default"
# The dimensions of the single-table set-up (the monitor named ``default``).
DEFAULT_DIMENSIONS = ("channelid", "actioncode", "os_family")


@dataclass(frozen=True)
class MonitorSpec:
    """One monitored query: where it runs, what it returns, how its model is named and when
    it alerts. ``dimensions`` None means every column of the result but ``date`` and
    ``count`` (``user_agent`` becoming ``os_family``)."""

    name: str
    database_url: str = field(repr=False)
    query_path: Path
    dimensions: tuple[str, ...] | None
    model_name: str
    experiment: str
    alert_min_anomalies: int = 1
    alert_share: float | None = None
    alert_min_change: float = 0.0  # events between a count and its expected count
    alert_min_change_pct: float = 0.0  # per cent of the expected count
    alert_direction: str = "both"  # or "low" (drops, stalls, missing series) or "high"
    alert_budget: float = 0.5  # false alert days per 30 normal days training calibrates to
    holidays: str = ""  # a country and subdivision of the holidays package: US, AU-VIC
    freshness_path: Path | None = None  # the query giving the day's latest event time
    freshness_column: str = ""  # or the counts query's column of each row's latest event
    late_tolerance_minutes: float = 60.0  # a day is late when its last event is earlier
    settle_hours: float = 0.0  # a nightly run scores a day this long after its end
    calendar_path: Path | None = None
    owner: str = ""
    runbook: str = ""
    recipients: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()  # the channels its alerts go to; none: the results folder

    def route(self, channel: str) -> Route | None:
        return next((route for route in self.routes if route.channel == channel), None)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, already validated: the settings every monitor shares, and the
    monitors (from ``monitors.yml``, or the one named ``default`` built from ``VM_*``)."""

    tracking_uri: str
    model_alias: str
    results_dir: Path
    log_file: Path
    log_level: str
    timezone: str
    schedule: str
    smtp: SmtpSettings
    monitors: tuple[MonitorSpec, ...]
    state_url: str = field(default="", repr=False)
    workers: int = 2
    lock_wait: float = 3600.0  # seconds a run waits for another run of the same monitor
    run_timeout: float = 7200.0  # seconds a nightly run or training may take in all (0: none)
    max_series: int = 200_000  # series a day may hold; a query giving more is refused
    monitors_file: Path | None = None
    ua_cache_path: Path | None = None
    connect_timeout: float = 30.0  # seconds to connect to a monitored database
    query_timeout: float = 1800.0  # seconds a monitor's query may run, then stopped on the server
    http_timeout: float = 10.0  # seconds for each webhook request
    delivery_timeout: float = 300.0  # seconds for each message, whatever the server does
    base_url: str = ""  # the web service's address, for links in alerts
    web_token: str = field(default="", repr=False)  # lets the web service write; "": read-only
    unknown_keys: tuple[str, ...] = ()  # VM_* names that are no setting: likely typos

    def monitor(self, name: str | None = None) -> MonitorSpec:
        """The monitor ``name``; without a name, the only one (an error when there are
        several: the caller must say which)."""
        if name is None:
            if len(self.monitors) == 1:
                return self.monitors[0]
            raise ConfigError(
                f"{len(self.monitors)} monitors are configured: name one with --monitor "
                f"({', '.join(m.name for m in self.monitors)})"
            )
        for spec in self.monitors:
            if spec.name == name:
                return spec
        known = ", ".join(m.name for m in self.monitors)
        raise ConfigError(f"no monitor named {name!r} (configured: {known})")

    def selected(self, names: Sequence[str] | None) -> tuple[MonitorSpec, ...]:
        """The monitors ``names`` in the order given (all of them when none is named)."""
        if not names:
            return self.monitors
        return tuple(self.monitor(name) for name in dict.fromkeys(names))

    @property
    def artifact_dir(self) -> Path | None:
        """Artifacts sit beside a local SQLite tracking store, in ``<store dir>/artifacts``."""
        if not self.tracking_uri.startswith("sqlite:"):
            return None
        database = make_url(self.tracking_uri).database
        return Path(database).parent / "artifacts" if database else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs, results or emails: the database, tracking
        store and SMTP passwords (each also as written inside a URL), webhook URLs and the web
        service's token."""
        urls = [*(m.database_url for m in self.monitors), self.tracking_uri, self.state_url]
        forms = [form for url in urls for form in url_password_forms(url)]
        if self.smtp.password:
            forms.append(self.smtp.password)
        if self.web_token:
            forms.append(self.web_token)
        for route in (route for monitor in self.monitors for route in monitor.routes):
            forms += [route.target, *_url_secret_parts(route.target)]
        return tuple(dict.fromkeys(f for f in forms if f))


def _url_secret_parts(target: str) -> list[str]:
    """The path and query of a webhook URL, which a library's debug log may show alone."""
    parts = urlsplit(target)
    if not parts.scheme.startswith("http"):
        return []
    return [part for part in (parts.path, parts.query) if len(part) > 1]


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: for logs and messages."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


def url_password_forms(url: str) -> list[str]:
    """The password of ``url`` as written in it, decoded, and in the usual encodings."""
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return []
    written = userinfo.split(":", 1)[1]
    decoded = unquote(written)
    return [written, decoded, quote(decoded, safe=""), quote_plus(decoded)]


def load_settings(
    env_file: str | Path = ".env", environ: Mapping[str, str] | None = None
) -> Settings:
    """Resolve settings: a variable set in ``environ`` wins over ``env_file``, which wins over
    the defaults. ``environ`` defaults to the process environment."""
    environ = os.environ if environ is None else environ
    from_file = _env_file(Path(env_file))
    values = {**DEFAULTS, **from_file, **{k: environ[k] for k in DEFAULTS if k in environ}}
    given = {**from_file, **environ}
    unknown = tuple(sorted(k for k in given if k.startswith("VM_") and k not in DEFAULTS))
    settings = _build(values)
    monitors_file = _monitors_file(values["VM_MONITORS"])
    if monitors_file is not None:
        from volume_monitor.monitors import read_monitors

        lookup = {**from_file, **environ}
        defaults = settings.monitors[0].routes
        specs = read_monitors(monitors_file, lookup, settings.smtp.recipients, defaults)
        settings = replace(settings, monitors=specs, monitors_file=monitors_file)
    return replace(settings, unknown_keys=unknown)


def _env_file(path: Path) -> dict[str, str]:
    """The variables of ``path`` (none when it does not exist); a ``.env`` that cannot be
    read, is a folder or is not UTF-8 is one line, never a traceback nor silently ignored."""
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a settings file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    values = dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}


def _monitors_file(value: str) -> Path | None:
    """The monitors file: ``VM_MONITORS`` (which must exist), else ``monitors.yml`` in the
    working directory when there is one, else None (the ``default`` monitor)."""
    if value.strip():
        path = _path(value.strip())
        if not path.is_file():
            raise ConfigError(f"VM_MONITORS names {path}, which does not exist")
        return path
    found = _path("monitors.yml")
    return found if found.is_file() else None


def warn_unknown_keys(settings: Settings) -> None:
    """Log a warning for each ``VM_*`` key that is not a known setting (likely a typo); called
    once logging is set up, so the warning reaches the log file too."""
    for key in settings.unknown_keys:
        log.warning("unknown setting %s is ignored (known: see .env.example)", key)


def _build(v: Mapping[str, str]) -> Settings:
    smtp = SmtpSettings(
        host=v["SMTP_HOST"].strip(),
        port=_port(v, default=465 if _boolean(v, "SMTP_SSL") else 25),
        user=v["SMTP_USER"].strip(),
        password=v["SMTP_PASSWORD"],
        ssl=_boolean(v, "SMTP_SSL"),
        starttls=_boolean(v, "SMTP_STARTTLS"),
        timeout=_number(v, "SMTP_TIMEOUT"),
        sender=v["ALERT_FROM"].strip(),
        recipients=tuple(a.strip() for a in v["ALERT_TO"].split(",") if a.strip()),
    )
    if smtp.user and not smtp.password:
        raise ConfigError("SMTP_USER is set but SMTP_PASSWORD is empty")
    if "@" not in smtp.sender or any("@" not in r for r in smtp.recipients):
        raise ConfigError("ALERT_FROM and every address in ALERT_TO must be email addresses")
    if smtp.host and not smtp.recipients:
        raise ConfigError("SMTP_HOST is set but ALERT_TO is empty: nobody would get the alert")
    workers = _integer(v, "VM_WORKERS")
    if workers < 1:
        raise ConfigError("VM_WORKERS must be at least 1")
    max_series = _integer(v, "VM_MAX_SERIES")
    if max_series < 1:
        raise ConfigError("VM_MAX_SERIES must be at least 1")
    return Settings(
        tracking_uri=_tracking_uri(v["MLFLOW_TRACKING_URI"]),
        model_alias=_required(v, "VM_MODEL_ALIAS"),
        results_dir=_path(v["VM_RESULTS_DIR"]),
        log_file=_path(v["VM_LOG_FILE"]),
        log_level=_log_level(v["VM_LOG_LEVEL"]),
        timezone=_timezone(v["VM_TIMEZONE"]),
        schedule=_required(v, "VM_SCHEDULE"),
        smtp=smtp,
        monitors=(_default_monitor(v, smtp),),
        state_url=absolute_sqlite(v["VM_STATE_URL"], "VM_STATE_URL"),
        workers=workers,
        lock_wait=_non_negative(v, "VM_LOCK_WAIT"),
        run_timeout=_non_negative(v, "VM_RUN_TIMEOUT"),
        max_series=max_series,
        ua_cache_path=_path(v["VM_UA_CACHE"]) if v["VM_UA_CACHE"].strip() else None,
        connect_timeout=_number(v, "VM_CONNECT_TIMEOUT"),
        query_timeout=_number(v, "VM_QUERY_TIMEOUT"),
        http_timeout=_number(v, "VM_HTTP_TIMEOUT"),
        delivery_timeout=_number(v, "VM_DELIVERY_TIMEOUT"),
        base_url=_base_url(v["VM_BASE_URL"]),
        web_token=v["VM_WEB_TOKEN"].strip(),
    )


def _routes(v: Mapping[str, str], smtp: SmtpSettings) -> tuple[Route, ...]:
    """The default monitor's channels: each one whose ``VM_*`` target is set (email: when
    ``SMTP_HOST`` and ``ALERT_TO`` are). Every severity setting is checked, used or not."""
    severity = {channel: _severity(v, channel.upper()) for channel in CHANNELS}
    routes = []
    if smtp.configured:
        routes.append(Route("email", min_severity=severity["email"], recipients=smtp.recipients))
    for channel, key in (("slack", "VM_SLACK_WEBHOOK_URL"), ("teams", "VM_TEAMS_WEBHOOK_URL"),
                         ("webhook", "VM_WEBHOOK_URL")):  # fmt: skip
        if v[key].strip():
            routes.append(Route(channel, http_url(v[key].strip(), key), severity[channel]))
    if v["VM_PAGERDUTY_ROUTING_KEY"].strip():
        endpoint = http_url(v["VM_PAGERDUTY_URL"].strip(), "VM_PAGERDUTY_URL")
        key = v["VM_PAGERDUTY_ROUTING_KEY"].strip()
        routes.append(Route("pagerduty", key, severity["pagerduty"], endpoint))
    return tuple(routes)


def _severity(v: Mapping[str, str], channel: str) -> str:
    key = f"VM_{channel}_MIN_SEVERITY"
    word = v[key].strip().lower()
    if word not in SEVERITIES:
        raise ConfigError(f"{key} must be one of {', '.join(SEVERITIES)}, not {v[key]!r}")
    return word


def http_url(value: str, key: str) -> str:
    """``value`` if it is an http(s) URL with a host; else a one-line error naming ``key``
    (never the value: a webhook URL holds its token)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key} must be an http:// or https:// URL")
    return value


def endpoint_label(url: str) -> str:
    """Where ``url`` points, without its path or query (which may hold a token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _base_url(value: str) -> str:
    value = value.strip()
    return http_url(value, "VM_BASE_URL").rstrip("/") if value else ""


def _default_monitor(v: Mapping[str, str], smtp: SmtpSettings) -> MonitorSpec:
    """The single-table set-up as the monitor ``default``, from the ``VM_*`` settings."""
    share = v["VM_ALERT_SHARE"].strip()
    return MonitorSpec(
        name=DEFAULT_MONITOR,
        database_url=absolute_sqlite(v["VM_DATABASE_URL"], "VM_DATABASE_URL"),
        query_path=_path(v["VM_QUERY"]),
        dimensions=DEFAULT_DIMENSIONS,
        model_name=_required(v, "VM_MODEL_NAME"),
        experiment=_required(v, "VM_EXPERIMENT"),
        alert_min_anomalies=_integer(v, "VM_ALERT_MIN_ANOMALIES"),
        alert_share=_share(share) if share else None,
        alert_min_change=_non_negative(v, "VM_ALERT_MIN_CHANGE", "events"),
        alert_min_change_pct=_non_negative(v, "VM_ALERT_MIN_CHANGE_PCT", "per cent"),
        alert_direction=alert_direction(v["VM_ALERT_DIRECTION"], "VM_ALERT_DIRECTION"),
        alert_budget=_number(v, "VM_ALERT_BUDGET"),
        holidays=holiday_country(v["VM_HOLIDAYS"], "VM_HOLIDAYS"),
        freshness_path=_path(v["VM_FRESHNESS_QUERY"]) if v["VM_FRESHNESS_QUERY"].strip() else None,
        freshness_column=one_freshness(
            v["VM_FRESHNESS_QUERY"],
            v["VM_FRESHNESS_COLUMN"],
            ("VM_FRESHNESS_QUERY", "VM_FRESHNESS_COLUMN"),
        ),
        late_tolerance_minutes=_non_negative(v, "VM_LATE_TOLERANCE_MINUTES", "minutes"),
        settle_hours=_non_negative(v, "VM_SETTLE_HOURS", "hours"),
        calendar_path=_path(v["VM_CALENDAR"]) if v["VM_CALENDAR"].strip() else None,
        recipients=smtp.recipients,
        routes=_routes(v, smtp),
    )


def _path(value: str, base: Path | None = None) -> Path:
    """``value`` as an absolute path; a relative one resolves against ``base`` (default: the
    working directory)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base or Path.cwd()) / path


def _required(v: Mapping[str, str], key: str) -> str:
    value = v[key].strip()
    if not value:
        raise ConfigError(f"{key} must not be empty")
    return value


def absolute_sqlite(value: str, key: str, base: Path | None = None) -> str:
    """Validate a database URL; make a relative SQLite file path absolute (against ``base``,
    default the working directory). ``key`` names the setting in the error. A user or
    password holding a bare ``@`` is refused: the URL would be cut there, and the rest of
    the password shown as the host in every error."""
    if urlsplit(value.strip()).netloc.count("@") > 1:
        raise ConfigError(f"{key}: the user or password holds an '@'; write it as %40")
    try:
        url = make_url(value.strip())
    except (ArgumentError, ValueError):
        raise ConfigError(f"{key} is not a valid database URL") from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=str(_path(url.database, base)))
    return url.render_as_string(hide_password=False)


def _tracking_uri(value: str) -> str:
    """A local SQLite store's path made absolute; any other MLflow URI (http, databricks, a
    database) kept as given."""
    value = value.strip()
    if value != "databricks" and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
        raise ConfigError(f"MLFLOW_TRACKING_URI is not a tracking URI: {redact_url(value)!r}")
    return absolute_sqlite(value, "MLFLOW_TRACKING_URI") if value.startswith("sqlite:") else value


def _boolean(v: Mapping[str, str], key: str) -> bool:
    word = v[key].strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{key} must be true or false, not {v[key]!r}")


def _integer(v: Mapping[str, str], key: str, default: int | None = None) -> int:
    text = v[key].strip()
    if not text and default is not None:
        return default
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(f"{key} must be a whole number, not {v[key]!r}") from None
    if number < 0:
        raise ConfigError(f"{key} must not be negative")
    return number


def _port(v: Mapping[str, str], default: int) -> int:
    port = _integer(v, "SMTP_PORT", default=default)
    if not 1 <= port <= 65535:
        raise ConfigError(f"SMTP_PORT must be between 1 and 65535, not {port}")
    return port


def _number(v: Mapping[str, str], key: str) -> float:
    try:
        number = float(v[key])
    except ValueError:
        raise ConfigError(f"{key} must be a number, not {v[key]!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{key} must be a positive number, not {v[key]!r}")
    return number


def _non_negative(v: Mapping[str, str], key: str, unit: str = "seconds") -> float:
    """A number of ``unit`` (seconds, events, per cent, …), 0 or more."""
    try:
        number = float(v[key])
    except ValueError:
        raise ConfigError(f"{key} must be a number of {unit}, not {v[key]!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"{key} must be 0 or more {unit}, not {v[key]!r}")
    return number


def one_freshness(query: str, column: str, keys: tuple[str, str]) -> str:
    """The freshness column (empty: none), refused with a freshness query beside it (``keys``:
    the two settings' names, for the message)."""
    if query.strip() and column.strip():
        raise ConfigError(f"{keys[0]} and {keys[1]} are both set: give one")
    return column.strip()


DIRECTIONS = ("both", "low", "high")


def alert_direction(text: str, key: str) -> str:
    """Which way a series must move to alert: ``both``, ``low`` or ``high``."""
    direction = text.strip().lower()
    if direction not in DIRECTIONS:
        raise ConfigError(f"{key} must be one of {', '.join(DIRECTIONS)}, not {text!r}")
    return direction


def holiday_country(text: str, key: str) -> str:
    """A country and subdivision the ``holidays`` package knows (``US``, ``AU-VIC``), upper
    case; empty for none."""
    where = text.strip().upper()
    if where:
        from volume_monitor.detect.calendar import public_holidays

        try:
            public_holidays(where, [2026])
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return where


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        raise ConfigError(
            f"VM_ALERT_SHARE must be a fraction between 0 and 1, not {text!r}"
        ) from None
    if not 0 < share <= 1:
        raise ConfigError("VM_ALERT_SHARE must be a fraction between 0 and 1")
    return share


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"VM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {text!r}")
    return level


def _timezone(text: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"VM_TIMEZONE is not a known time zone: {text!r}") from None
    return text.strip()
