"""The alert policy's silences: which rows they match, and what the day's decision counts."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from volume_monitor import alert
from volume_monitor.alerting import policy
from volume_monitor.state import Silence

UNTIL = dt.date(2026, 7, 31)


def day() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "country": ["DE", "DE", "FR", "FR"],
            "payment_method": ["paypal", "card", "paypal", "card"],
            "is_anomaly": [True, True, True, False],
        }
    )


def silence(**matchers: str) -> Silence:
    return Silence("orders", matchers, UNTIL, "planned")


def test_a_silence_matches_rows_holding_every_matcher():
    rows = day()
    assert policy.silenced_rows(rows, [silence(country="DE")]).tolist() == [1, 1, 0, 0]
    both = silence(country="DE", payment_method="paypal")
    assert policy.silenced_rows(rows, [both]).tolist() == [1, 0, 0, 0]
    either = [silence(country="FR"), silence(payment_method="card")]
    assert policy.silenced_rows(rows, either).tolist() == [0, 1, 1, 1]
    assert policy.silenced_rows(rows, [silence(colour="red")]).tolist() == [0, 0, 0, 0]
    assert policy.silenced_rows(rows, [silence()]).tolist() == [1, 1, 1, 1]
    assert policy.silenced_rows(rows, []).tolist() == [0, 0, 0, 0]


def test_silenced_series_do_not_count_towards_the_alert(tmp_path):
    from conftest import settings_in

    monitor = settings_in(tmp_path, VM_ALERT_MIN_ANOMALIES="2").monitor()
    rows = day()
    rows["silenced"] = policy.silenced_rows(rows, [silence(country="DE")])
    decision = alert.decide(rows, monitor, missing_day=False)
    assert (decision.alert, decision.anomalies, decision.silenced) == (False, 1, 2)
    assert policy.sendable(rows).tolist() == [False, False, True, False]
    rows["silenced"] = False
    assert alert.decide(rows, monitor, missing_day=False).alert


def test_only_a_whole_monitor_silence_keeps_a_missing_day_quiet(tmp_path):
    from conftest import settings_in

    monitor = settings_in(tmp_path).monitor()
    empty = day().assign(is_anomaly=True)
    assert (
        alert.decide(empty, monitor, True, monitor_silenced=False)
        .reasons[0]
        .startswith("missing day")
    )
    assert policy.silences_whole_monitor([silence(country="DE"), silence()])
    assert not policy.silences_whole_monitor([silence(country="DE")])
    quiet = empty.assign(silenced=True)
    decision = alert.decide(quiet, monitor, True, monitor_silenced=True)
    assert (decision.alert, decision.reasons, decision.silenced) == (False, [], 4)
