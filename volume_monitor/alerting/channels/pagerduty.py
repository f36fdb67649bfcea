"""PagerDuty, through the Events API v2: one ``trigger`` per monitor and day, deduplicated by
``dedup_key`` = ``volume-monitor/<monitor>/<date>`` (a repeated trigger joins the same
incident), and one ``resolve`` per alerted day when the monitor is back to normal. Our
severities are PagerDuty's own."""

from __future__ import annotations

from typing import Any

from volume_monitor.alerting.channels import Context, Sent
from volume_monitor.alerting.channels.http import post_json
from volume_monitor.alerting.content import Alert, total_line
from volume_monitor.config import Route

GROUPED = False  # one event per alert: an incident per monitor and day
MAX_SUMMARY = 1024  # characters, PagerDuty's limit
SERIES_DETAILED = 25


def send(route: Route, alerts: list[Alert], context: Context) -> Sent:
    for event in render(route.target, alerts):
        post_json("pagerduty", route.endpoint, event, context.settings.http_timeout)
    return Sent()


def dedup_key(monitor: str, day: str) -> str:
    return f"volume-monitor/{monitor}/{day}"


def render(routing_key: str, alerts: list[Alert]) -> list[dict[str, Any]]:
    """The events for ``alerts``: a trigger for an alert, a resolve per day a notice
    resolves."""
    events = []
    for alert in alerts:
        if alert.kind == "resolved":
            events += [
                {"routing_key": routing_key, "event_action": "resolve",
                 "dedup_key": dedup_key(alert.monitor, day)}
                for day in alert.resolves
            ]  # fmt: skip
        else:
            events.append(_trigger(routing_key, alert))
    return events


def _trigger(routing_key: str, alert: Alert) -> dict[str, Any]:
    details: dict[str, Any] = {
        "summary": alert.summary,
        "series": [
            {
                **line.labels,
                "count": line.count,
                "expected": line.expected,
                "expected_range": line.expected_range,
                "change": None if line.change is None else round(line.change, 4),
                "direction": line.direction,
                "cause": line.cause,
                "why": line.why,
                "days_in_a_row": line.days_off,
            }
            for line in alert.series[:SERIES_DETAILED]
        ],
        "more_series": max(0, len(alert.series) - SERIES_DETAILED) + alert.more,
        "model": alert.model,
    }
    if alert.total is not None:
        details["total"] = total_line(alert.total)
    details.update({key: value for key, value in
                    (("owner", alert.owner), ("runbook", alert.runbook),
                     ("groups", alert.groups), ("late", alert.late),
                     ("recovered", alert.recovered)) if value})  # fmt: skip
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(alert.monitor, alert.date),
        "client": "volume-monitor",
        "payload": {
            "summary": alert.subject[:MAX_SUMMARY],
            "source": f"volume-monitor/{alert.monitor}",
            "severity": alert.severity or "warning",
            "component": alert.monitor,
            "group": alert.dimensions[0] if alert.dimensions else alert.monitor,
            "class": "volume anomaly",
            "custom_details": details,
        },
    }
    links = [{"href": alert.link, "text": "The day in volume-monitor"}] if alert.link else []
    if alert.runbook.startswith(("http://", "https://")):
        links.append({"href": alert.runbook, "text": "Runbook"})
    if links:
        event["links"] = links
    if alert.link:
        event["client_url"] = alert.link
    return event
