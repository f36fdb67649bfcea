"""``/metrics``: what Prometheus scrapes, read from the state store at each scrape.

Per monitor (label ``monitor``): when its last run scored a day and which day, how long that
took, the rows and anomalies it found, whether the day alerted, and its outbox: deliveries per
status (``volume_monitor_deliveries{status="failed"}``) and those still to send.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from volume_monitor.config import Settings
from volume_monitor.state import UNDELIVERED, Store

PREFIX = "volume_monitor_"


class StoreCollector(Collector):
    """The monitors' last runs and outboxes, as gauges, from ``store``."""

    def __init__(self, settings: Settings, store: Store, today: Callable[[], dt.date]):
        self._settings = settings
        self._store = store
        self._today = today

    def collect(self) -> Iterator[Metric]:
        gauges = {
            name: GaugeMetricFamily(PREFIX + name, text, labels=["monitor"])
            for name, text in (
                ("last_run_timestamp_seconds", "When the last run scored a day (Unix time)."),
                ("last_scored_day_timestamp_seconds", "The last scored day, at 00:00 UTC."),
                ("last_run_duration_seconds", "How long the last run took to read and score."),
                ("last_run_rows", "Series-days the last run scored."),
                ("last_run_anomalies", "Anomalous series the last run found."),
                ("alerting", "1 when the last scored day alerted."),
                ("outbox_size", "Deliveries still to send (pending or failed)."),
            )
        }
        deliveries = GaugeMetricFamily(
            PREFIX + "deliveries", "Deliveries per status.", labels=["monitor", "status"]
        )
        store, today = self._store, self._today()
        for monitor in self._settings.monitors:
            name = monitor.name
            last = store.last_day(name, today)
            if last is not None:
                for key, value in _last_run(last).items():
                    if value is not None:
                        gauges[key].add_metric([name], value)
            counts = store.outbox_counts(name)
            for status, n in sorted(counts.items()):
                deliveries.add_metric([name, status], n)
            gauges["outbox_size"].add_metric([name], sum(counts.get(s, 0) for s in UNDELIVERED))
        yield from gauges.values()
        yield deliveries


def _last_run(record) -> dict[str, float | None]:
    scored_at = dt.datetime.fromisoformat(record.scored_at) if record.scored_at else None
    day = dt.datetime.combine(record.date, dt.time(), dt.UTC)
    return {
        "last_run_timestamp_seconds": scored_at.timestamp() if scored_at else None,
        "last_scored_day_timestamp_seconds": day.timestamp(),
        "last_run_duration_seconds": record.summary.get("duration_seconds"),
        "last_run_rows": float(record.rows),
        "last_run_anomalies": float(record.anomalies),
        "alerting": float(record.alert),
    }


def registry_for(
    settings: Settings, store: Store, today: Callable[[], dt.date]
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(settings, store, today))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
