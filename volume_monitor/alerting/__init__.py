"""Alerting: what a scored day sends, and to whom. ``policy`` decides which anomalous series
may be sent (silences)."""
