"""The monitors file (``monitors.yml``): one monitor per query, each with its database, its
dimension columns, its model and its alert rules.

::

    defaults:                      # applies to every monitor; a monitor's own key wins
      database_url: ${EVENTS_DB_URL}
      alert_min_anomalies: 1
    monitors:
      activity:
        query: sql/daily_volume.sql
        dimensions: [channelid, actioncode, os_family]
      orders:
        database_url: ${ORDERS_DB_URL}
        query: sql/orders_daily.sql
        owner: payments team
        runbook: https://wiki.example.com/runbooks/orders-volume
        holidays: DE               # public holidays get their own expectation
        alert_min_change_pct: 20   # gates: alert only on a move of 20% or more ...
        alert_direction: low       # ... and only downwards
        notify:                    # replaces the VM_* channels for this monitor
          email: {recipients: [payments@example.com]}
          slack: {webhook_url: "${ORDERS_SLACK_URL}", min_severity: error}
          pagerduty: {routing_key: "${ORDERS_PD_KEY}", min_severity: critical}

``${VAR}`` is read from the environment, then ``.env``. Relative paths (``query``,
``calendar``, a SQLite file) resolve against the file's folder. Every mistake is one line
naming the file, the monitor and the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from volume_monitor.config import (
    PAGERDUTY_EVENTS_URL,
    MonitorSpec,
    Route,
    absolute_sqlite,
    holiday_country,
    http_url,
    one_freshness,
)
from volume_monitor.errors import ConfigError

NAME = re.compile(r"[a-z0-9_-]+")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RESERVED_COLUMNS = {"date", "count", "user_agent"}


Severity = Literal["warning", "error", "critical"]


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    min_severity: Severity = "warning"


class EmailChannel(_Channel):
    recipients: list[str] | None = None  # default: the monitor's recipients, or ALERT_TO

    @field_validator("recipients", mode="before")
    @classmethod
    def _recipient_list(cls, value: Any) -> Any:
        return _addresses(value)


class HookChannel(_Channel):
    webhook_url: str


class WebhookChannel(_Channel):
    url: str


class PagerDutyChannel(_Channel):
    routing_key: str
    url: str = PAGERDUTY_EVENTS_URL


class Notify(BaseModel):
    """A monitor's channels (``notify:``); each one absent is not used."""

    model_config = ConfigDict(extra="forbid")

    email: EmailChannel | None = None
    slack: HookChannel | None = None
    teams: HookChannel | None = None
    webhook: WebhookChannel | None = None
    pagerduty: PagerDutyChannel | None = None


def _addresses(value: Any) -> Any:
    """A recipient list, also given as ``"a@x, b@y"`` like ALERT_TO; each must be an address."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and any("@" not in str(v) for v in value):
        raise ValueError("every recipient must be an email address")
    return value


class MonitorFields(BaseModel):
    """The keys a monitor (or ``defaults:``) may set."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    database_url: str | None = None
    query: str | None = None
    dimensions: Annotated[list[str], Field(min_length=1)] | None = None
    model_name: str | None = None
    experiment: str | None = None
    alert_min_anomalies: Annotated[int, Field(ge=0)] | None = None
    alert_share: Annotated[float, Field(gt=0, le=1)] | None = None
    alert_min_change: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    alert_min_change_pct: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    alert_direction: Literal["both", "low", "high"] | None = None
    alert_budget: Annotated[float, Field(gt=0, le=30, allow_inf_nan=False)] | None = None
    holidays: str | None = None
    freshness: str | None = None
    freshness_column: str | None = None
    late_tolerance_minutes: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    settle_hours: Annotated[float, Field(ge=0, le=72, allow_inf_nan=False)] | None = None
    calendar: str | None = None
    owner: str | None = None
    runbook: str | None = None
    recipients: list[str] | None = None
    notify: Notify | None = None

    @field_validator("dimensions")
    @classmethod
    def _dimension_names(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        reserved = sorted(RESERVED_COLUMNS & set(names))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} cannot be a dimension")
        if len(set(names)) != len(names):
            raise ValueError("a dimension is listed twice")
        return names

    @field_validator("recipients", mode="before")
    @classmethod
    def _recipient_list(cls, value: Any) -> Any:
        return _addresses(value)


class MonitorsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: MonitorFields = MonitorFields()
    monitors: dict[str, MonitorFields]


def read_monitors(
    path: Path,
    variables: Mapping[str, str],
    recipients: tuple[str, ...] = (),
    routes: tuple[Route, ...] = (),
) -> tuple[MonitorSpec, ...]:
    """The monitors declared in ``path``; ``variables`` resolve ``${VAR}``; ``recipients``
    (``ALERT_TO``) and ``routes`` (the ``VM_*`` channels) are every monitor's default. A
    monitor's ``notify:`` (or the one under ``defaults:``) replaces the default channels."""
    where = path.name
    document = _load_yaml(path)
    if not isinstance(document, dict) or "monitors" not in document:
        raise ConfigError(f"{where}: expected a mapping with the key 'monitors'")
    for name in document.get("monitors") or {}:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(f"{where}: monitor name {name!r} must match [a-z0-9_-]+")
    try:
        parsed = MonitorsFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_first_problem(exc)}") from None
    if not parsed.monitors:
        raise ConfigError(f"{where}: 'monitors' declares no monitor")
    specs = tuple(
        _spec(name, fields, parsed.defaults, path, variables, recipients, routes)
        for name, fields in parsed.monitors.items()
    )
    models = [spec.model_name for spec in specs]
    shared = sorted({model for model in models if models.count(model) > 1})
    if shared:
        raise ConfigError(
            f"{where}: monitors share the model_name {shared[0]!r}: give each its own"
        )
    return specs


def _spec(
    name: str,
    fields: MonitorFields,
    defaults: MonitorFields,
    path: Path,
    variables: Mapping[str, str],
    recipients: tuple[str, ...],
    routes: tuple[Route, ...],
) -> MonitorSpec:
    where = f"{path.name}: monitor {name!r}"
    values = {**defaults.model_dump(exclude_none=True), **fields.model_dump(exclude_none=True)}
    values = {key: _expanded(value, key, where, variables) for key, value in values.items()}
    for key in ("database_url", "query"):
        if not values.get(key):
            raise ConfigError(f"{where}: missing key {key!r} (set it here or under defaults:)")
    base = path.parent
    model_name = values.get("model_name") or f"volume-monitor-{name}"
    own_recipients = tuple(values.get("recipients", recipients))
    email_on = any(route.channel == "email" for route in routes)  # SMTP is configured
    if "notify" in values:
        routes = _routes(values["notify"], own_recipients, email_on, where)
    else:
        routes = tuple(
            replace(route, recipients=own_recipients) if route.channel == "email" else route
            for route in routes
            if route.channel != "email" or own_recipients
        )
    return MonitorSpec(
        name=name,
        database_url=absolute_sqlite(values["database_url"], f"{where}: database_url", base),
        query_path=_resolved(values["query"], base),
        dimensions=tuple(values["dimensions"]) if "dimensions" in values else None,
        model_name=model_name,
        experiment=values.get("experiment") or model_name,
        alert_min_anomalies=values.get("alert_min_anomalies", 1),
        alert_share=values.get("alert_share"),
        alert_min_change=values.get("alert_min_change", 0.0),
        alert_min_change_pct=values.get("alert_min_change_pct", 0.0),
        alert_direction=values.get("alert_direction", "both"),
        alert_budget=values.get("alert_budget", 0.5),
        holidays=holiday_country(values.get("holidays", ""), f"{where}: holidays"),
        freshness_path=_resolved(values["freshness"], base) if values.get("freshness") else None,
        freshness_column=_one_freshness(values, where),
        late_tolerance_minutes=values.get("late_tolerance_minutes", 60.0),
        settle_hours=values.get("settle_hours", 0.0),
        calendar_path=_resolved(values["calendar"], base) if values.get("calendar") else None,
        owner=values.get("owner", ""),
        runbook=values.get("runbook", ""),
        recipients=own_recipients,
        routes=routes,
    )


def _routes(notify: dict, recipients: tuple[str, ...], email_on: bool, where: str):
    """The channels of a ``notify:`` mapping (already expanded); email only when SMTP is
    configured and someone is to get it."""
    routes = []
    for channel, fields in notify.items():
        if fields is None:
            continue
        severity = fields["min_severity"]
        key = f"{where}: notify.{channel}"
        if channel == "email":
            to = tuple(fields.get("recipients") or recipients)
            if email_on and to:
                routes.append(Route("email", min_severity=severity, recipients=to))
        elif channel == "pagerduty":
            endpoint = _url(fields["url"], f"{key}.url")
            routes.append(Route(channel, fields["routing_key"], severity, endpoint))
        else:
            name = "url" if channel == "webhook" else "webhook_url"
            routes.append(Route(channel, _url(fields[name], f"{key}.{name}"), severity))
    return tuple(routes)


def _one_freshness(values: dict, where: str) -> str:
    query, column = values.get("freshness", ""), values.get("freshness_column", "")
    return one_freshness(query, column, (f"{where}: freshness", "freshness_column"))


def _url(value: str, key: str) -> str:
    try:
        return http_url(value, key)
    except ConfigError:
        raise ConfigError(f"{key} must be an http:// or https:// URL") from None


def _resolved(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _expanded(value: Any, key: str, where: str, variables: Mapping[str, str]) -> Any:
    """``value`` with every ``${VAR}`` replaced; an unset variable is an error."""
    if isinstance(value, list):
        return [_expanded(item, key, where, variables) for item in value]
    if isinstance(value, dict):
        return {name: _expanded(item, key, where, variables) for name, item in value.items()}
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name not in variables:
            raise ConfigError(f"{where}: {key} uses ${{{name}}}, which is not set")
        return variables[name]

    return VARIABLE.sub(lookup, value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the
    last one silently, which would hide a duplicated monitor)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"{key!r} is given twice (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the monitors file {path}: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path.name}: not valid YAML{at}: {problem}") from None


def _first_problem(exc: ValidationError) -> str:
    """The first validation error as ``monitor 'x': unknown key 'y'`` (and how many more)."""
    errors = exc.errors()
    first = errors[0]
    location = [str(part) for part in first["loc"]]
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return _describe(location, first) + more


def _describe(location: list[str], error: dict) -> str:
    if location[:1] == ["monitors"] and len(location) >= 2:
        owner, rest = f"monitor {location[1]!r}", location[2:]
    elif location[:1] == ["defaults"]:
        owner, rest = "defaults", location[1:]
    else:
        owner, rest = "top level", location
    key = ".".join(part for part in rest if not part.isdigit())
    if error["type"] == "extra_forbidden":
        return f"{owner}: unknown key {key!r}"
    if error["type"] == "missing":
        return f"{owner}: missing key {key!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{owner}: {key or 'value'}: {message}" if key else f"{owner}: {message}"
