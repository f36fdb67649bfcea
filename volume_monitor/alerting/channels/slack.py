"""Slack, through an incoming webhook: one message a night with every monitor's alert as Block
Kit blocks (a header, the summary, the worst series as fields, a button to the day's page),
and ``text`` as the notification's fallback."""

from __future__ import annotations

from typing import Any

from volume_monitor.alerting.channels import Context, Sent
from volume_monitor.alerting.channels.http import post_json
from volume_monitor.alerting.content import Alert, percent, streak, total_line
from volume_monitor.config import Route

GROUPED = True
MAX_BLOCKS = 50  # Slack's limit for one message
MAX_FIELDS = 10  # per section
MAX_HEADER = 150  # characters of a header's plain text
MAX_TEXT = 3000  # characters of a section's text
SERIES_SHOWN = 8  # series shown as fields; the rest are counted


def send(route: Route, alerts: list[Alert], context: Context) -> Sent:
    post_json("slack", route.target, render(alerts), context.settings.http_timeout)
    return Sent()


def render(alerts: list[Alert]) -> dict[str, Any]:
    """The webhook's JSON: ``text`` (notification and fallback) and ``blocks``."""
    blocks: list[dict[str, Any]] = []
    for alert in alerts:
        blocks += _blocks(alert)
    if len(blocks) > MAX_BLOCKS:
        rest = _context(f"{len(alerts)} alerts: the rest is in the results.")
        blocks = [*blocks[: MAX_BLOCKS - 1], rest]
    text = "; ".join(alert.subject for alert in alerts)
    return {"text": _escape(text)[:MAX_TEXT], "blocks": blocks}


def _blocks(alert: Alert) -> list[dict[str, Any]]:
    icon = ":white_check_mark:" if alert.kind == "resolved" else ":rotating_light:"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": f"{alert.subject}"[:MAX_HEADER]}},
        _section(f"{icon} " + "\n".join(_escape(line) for line in alert.summary)),
    ]  # fmt: skip
    if alert.late:
        blocks.insert(1, _section(f":hourglass: *Sent late*: {_escape(alert.late)}"))
    if alert.total is not None:
        blocks.append(_section(_escape(total_line(alert.total))))
    if alert.groups:
        blocks.append(_section("*Moving together*\n" + "\n".join(
            f"• {_escape(line)}" for line in alert.groups)))  # fmt: skip
    fields = [_field(line) for line in alert.series[:SERIES_SHOWN]]
    for start in range(0, len(fields), MAX_FIELDS):
        blocks.append({"type": "section", "fields": fields[start : start + MAX_FIELDS]})
    hidden = len(alert.series) - SERIES_SHOWN + alert.more
    if hidden > 0:
        blocks.append(_context(f"… and {hidden} more anomalous series in the results"))
    blocks.append(_context(_escape(_footer(alert))))
    if alert.link:
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Open the day"},
            "url": alert.link,
        }]})  # fmt: skip
    blocks.append({"type": "divider"})
    return blocks


def _field(line) -> dict[str, str]:
    name = f"<{line.link}|{_escape(line.name)}>" if line.link else _escape(line.name)
    text = (
        f"*{name}*\n{line.count} events, expected {line.expected_range}{percent(line.change)}\n"
        f"{_escape(line.direction)}, {_escape(line.cause)}: {_escape(line.why)}"
        f"{streak(line.days_off)}"
    )
    return {"type": "mrkdwn", "text": text[:2000]}


def _footer(alert: Alert) -> str:
    parts = [f"monitor {alert.monitor}"]
    parts += [f"owner {alert.owner}"] if alert.owner else []
    parts += [f"runbook {alert.runbook}"] if alert.runbook else []
    parts += [f"model {alert.model}"]
    return " · ".join(parts)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_TEXT]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:MAX_TEXT]}]}


def _escape(text: str) -> str:
    """Slack's mrkdwn escaping: a label like ``<!channel>`` stays text."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
