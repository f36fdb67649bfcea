"""A generic webhook (Opsgenie, n8n, a home-made receiver): one JSON POST a night, shaped
like Alertmanager's webhook payload so existing receivers understand it, with the series in
full. ``groupKey`` (also the ``Idempotency-Key`` header) is the same for a retry of the same
message, so a receiver can drop a repeat.

::

    {"version": "4", "receiver": "volume-monitor", "status": "firing" | "resolved",
     "groupKey": "volume-monitor/2026-06-30/orders", "truncatedAlerts": 0,
     "groupLabels": {"date": "2026-06-30"}, "commonLabels": {...}, "commonAnnotations": {},
     "externalURL": "<VM_BASE_URL>",
     "alerts": [{"status": "firing", "labels": {"alertname": "VolumeAnomaly",
                 "monitor": "orders", "date": "2026-06-30", "severity": "warning"},
                 "annotations": {"summary": <headline>, "description": <summary>,
                                 "owner": ..., "runbook_url": ...},
                 "startsAt": "2026-06-30T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": <link to the day>, "fingerprint": "orders/2026-06-30",
                 "late": "", "total": {...}, "series": [{labels, count, expected, ...}],
                 "moreSeries": 0, "recovered": [<series back to normal>]}]}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from volume_monitor.alerting.channels import Context, Sent
from volume_monitor.alerting.channels.http import post_json
from volume_monitor.alerting.content import Alert
from volume_monitor.config import Route

GROUPED = True
NEVER = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"


def send(route: Route, alerts: list[Alert], context: Context) -> Sent:
    payload = render(alerts, context.settings.base_url)
    headers = {"Idempotency-Key": payload["groupKey"]}
    post_json("webhook", route.target, payload, context.settings.http_timeout, headers)
    return Sent()


def render(alerts: list[Alert], base_url: str = "") -> dict[str, Any]:
    entries = [_entry(alert) for alert in alerts]
    firing = any(alert.kind == "alert" for alert in alerts)
    dates = sorted({alert.date for alert in alerts})
    common = {key: value for key, value in entries[0]["labels"].items()
              if all(entry["labels"].get(key) == value for entry in entries)}  # fmt: skip
    keys = ",".join(f"{alert.monitor}:{alert.kind}" for alert in alerts)
    return {
        "version": "4",
        "receiver": "volume-monitor",
        "status": "firing" if firing else "resolved",
        "groupKey": f"volume-monitor/{','.join(dates)}/{keys}",
        "truncatedAlerts": 0,
        "groupLabels": {"date": ",".join(dates)},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": base_url,
        "alerts": entries,
    }


def _entry(alert: Alert) -> dict[str, Any]:
    resolved = alert.kind == "resolved"
    labels = {"alertname": "VolumeAnomaly", "monitor": alert.monitor, "date": alert.date}
    if alert.severity:
        labels["severity"] = alert.severity
    annotations = {"summary": alert.headline, "description": "\n".join(alert.summary)}
    if alert.owner:
        annotations["owner"] = alert.owner
    if alert.runbook:
        annotations["runbook_url"] = alert.runbook
    started = (alert.resolves or [alert.date])[0] + "T00:00:00Z"
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": started,
        "endsAt": f"{alert.date}T00:00:00Z" if resolved else NEVER,
        "generatorURL": alert.link,
        "fingerprint": f"{alert.monitor}/{(alert.resolves or [alert.date])[0]}",
        "late": alert.late,
        "resolves": alert.resolves,
        "model": alert.model,
        "total": dataclasses.asdict(alert.total) if alert.total else None,
        "series": [
            {
                "labels": line.labels,
                "count": line.count,
                "expected": line.expected,
                "expectedLow": line.expected_low,
                "expectedHigh": line.expected_high,
                "change": line.change,
                "direction": line.direction,
                "cause": line.cause,
                "deviation": line.deviation,
                "score": line.score,
                "why": line.why,
                "daysInARow": line.days_off,
                "link": line.link,
            }
            for line in alert.series
        ],
        "moreSeries": alert.more,
        "recovered": alert.recovered,
    }
