"""The monitor's state store: daily counts of every series, scored days, the outbox of
deliveries, feedback and silences, in one SQL database whose schema Alembic migrates.

    from volume_monitor.state import open_store
    with open_store(settings.state_url) as store:
        store.history("default", start, end, match={"channelid": "web"})
"""

from volume_monitor.state.migrate import HEAD
from volume_monitor.state.records import (
    DELIVERED,
    UNDELIVERED,
    DayRecord,
    Delivery,
    Feedback,
    Silence,
    series_key,
)
from volume_monitor.state.store import Store, open_store

__all__ = [
    "DELIVERED",
    "HEAD",
    "UNDELIVERED",
    "DayRecord",
    "Delivery",
    "Feedback",
    "Silence",
    "Store",
    "open_store",
    "series_key",
]
