"""``volume-monitor history``: a monitor's daily counts, expected ranges and verdicts, as the
state store remembers them (seeded from training, then one day per scored night)."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd

from volume_monitor import state

TOTAL_COLUMNS = ["date", "count", "expected_low", "expected_high", "anomalies", "alert", "source"]


def series_history(
    store: state.Store,
    monitor: str,
    start: dt.date,
    end: dt.date,
    match: dict[str, str] | None = None,
) -> pd.DataFrame:
    """With ``match``: one row per matching series and day. Without: one row per day, the
    counts and ranges summed over every series, with the number of anomalous series and
    whether the day alerted (empty for days known only from training)."""
    rows = store.history(monitor, start, end, match or None)
    if match:
        return rows
    if rows.empty:
        return pd.DataFrame(columns=TOTAL_COLUMNS)
    daily = rows.groupby("date", sort=True).agg(
        count=("count", "sum"),
        expected_low=("expected_low", "sum"),
        expected_high=("expected_high", "sum"),
        anomalies=("is_anomaly", lambda flags: int(flags.fillna(False).astype(bool).sum())),
        source=("source", "max"),
    )
    alerts = {record.date: record.alert for record in store.days(monitor, start, end)}
    daily["alert"] = [alerts.get(day.date(), "") for day in daily.index]
    return daily.reset_index()[TOTAL_COLUMNS]


def render(table: pd.DataFrame, form: str) -> str:
    """``table`` as an aligned text table, CSV or JSON records (dates as YYYY-MM-DD)."""
    shown = table.assign(date=pd.to_datetime(table["date"]).dt.strftime("%Y-%m-%d"))
    for column in ("expected_low", "expected_high"):
        if column in shown:
            shown[column] = shown[column].round().astype("Int64")
    if form == "csv":
        return shown.to_csv(index=False)
    if form == "json":
        records = json.loads(shown.to_json(orient="records"))
        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    if shown.empty:
        return "no history in the state store for that window\n"
    return shown.to_string(index=False) + "\n"
