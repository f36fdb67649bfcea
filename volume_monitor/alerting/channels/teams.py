"""Microsoft Teams, through a workflow ("When a Teams webhook request is received"): one
message a night holding an Adaptive Card, each monitor's alert a part of it: the headline,
the summary, the facts (monitor, severity, owner, runbook, day total, model), the worst series
and a button to the day's page."""

from __future__ import annotations

from typing import Any

from volume_monitor.alerting.channels import Context, Sent
from volume_monitor.alerting.channels.http import post_json
from volume_monitor.alerting.content import Alert, SeriesLine, percent, streak, total_line
from volume_monitor.config import Route

GROUPED = True
CARD_VERSION = "1.4"
SERIES_SHOWN = 10
COLORS = {"critical": "Attention", "error": "Attention", "warning": "Warning", None: "Good"}


def send(route: Route, alerts: list[Alert], context: Context) -> Sent:
    post_json("teams", route.target, render(alerts), context.settings.http_timeout)
    return Sent()


def render(alerts: list[Alert]) -> dict[str, Any]:
    """The workflow's JSON: a message with one Adaptive Card attachment."""
    body: list[dict[str, Any]] = []
    actions = []
    for alert in alerts:
        body += _part(alert)
        if alert.link:
            title = "Open the day" if len(alerts) == 1 else f"Open {alert.monitor} {alert.date}"
            actions.append({"type": "Action.OpenUrl", "title": title, "url": alert.link})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
        "actions": actions,
    }
    return {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": card,
        }],
    }  # fmt: skip


def _part(alert: Alert) -> list[dict[str, Any]]:
    part = [
        _text(alert.subject, weight="Bolder", size="Medium", color=COLORS.get(alert.severity)),
    ]
    if alert.late:
        part.append(_text(f"Sent late: {alert.late}", weight="Bolder"))
    part += [_text(line) for line in alert.summary]
    facts = [("Monitor", alert.monitor), ("Date", alert.date)]
    facts += [("Severity", alert.severity)] if alert.severity else []
    facts += [("Owner", alert.owner)] if alert.owner else []
    facts += [("Runbook", alert.runbook)] if alert.runbook else []
    facts += [("Total", total_line(alert.total).removeprefix("Day total: "))] if alert.total else []
    facts.append(("Model", alert.model))
    part.append({"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in facts]})
    if alert.groups:
        part.append(_text("Moving together: " + "; ".join(alert.groups)))
    part += [_series(line) for line in alert.series[:SERIES_SHOWN]]
    hidden = len(alert.series) - SERIES_SHOWN + alert.more
    if hidden > 0:
        part.append(_text(f"... and {hidden} more anomalous series in the results", size="Small"))
    return part


def _series(line: SeriesLine) -> dict[str, Any]:
    name = f"[{_plain(line.name)}]({line.link})" if line.link else _plain(line.name)
    return _text(
        f"**{name}**: {line.count} events, expected {line.expected_range}"
        f"{percent(line.change)}, {_plain(line.direction)}, {_plain(line.cause)}; "
        f"{line.why}{streak(line.days_off)}"
    )


def _text(text: str, **style: Any) -> dict[str, Any]:
    block = {"type": "TextBlock", "text": str(text), "wrap": True}
    block.update({key: value for key, value in style.items() if value})
    return block


def _plain(text: str) -> str:
    """A label shown as it is, not as Markdown (brackets and stars escaped)."""
    for mark in "\\*_[]()":
        text = str(text).replace(mark, "\\" + mark)
    return text
