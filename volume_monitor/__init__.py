"""volume-monitor: nightly anomaly detection on the daily volume of events in a database."""

__version__ = "0.1.0"
