"""The alert policy's silences: which rows they match, and what the day's decision counts."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from volume_monitor.alerting import content, policy
from volume_monitor.alerting.channels import email
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
    decision = policy.decide(rows, monitor, missing_day=False)
    assert (decision.alert, decision.anomalies, decision.silenced) == (False, 1, 2)
    assert policy.sendable(rows).tolist() == [False, False, True, False]
    rows["silenced"] = False
    assert policy.decide(rows, monitor, missing_day=False).alert


def test_only_a_whole_monitor_silence_keeps_a_missing_day_quiet(tmp_path):
    from conftest import settings_in

    monitor = settings_in(tmp_path).monitor()
    empty = day().assign(is_anomaly=True)
    assert (
        policy.decide(empty, monitor, True, monitor_silenced=False)
        .reasons[0]
        .startswith("missing day")
    )
    assert policy.silences_whole_monitor([silence(country="DE"), silence()])
    assert not policy.silences_whole_monitor([silence(country="DE")])
    quiet = empty.assign(silenced=True)
    decision = policy.decide(quiet, monitor, True, monitor_silenced=True)
    assert (decision.alert, decision.reasons, decision.silenced) == (False, [], 4)


def verdicts(rows: list[tuple[str, str, bool, str, str]]) -> pd.DataFrame:
    """(country, payment_method, is_anomaly, direction, cause) per series."""
    columns = ["country", "payment_method", "is_anomaly", "direction", "cause"]
    return pd.DataFrame(rows, columns=columns)


DIMS = ["country", "payment_method"]


def test_a_segment_whose_every_series_stopped_is_stalled_and_critical():
    rows = verdicts([
        ("DE", "paypal", True, "missing", "missing_series"),
        ("DE", "card", True, "low", "stall"),
        ("FR", "paypal", True, "low", "drop"),
        ("FR", "card", False, "", ""),
        ("IT", "card", True, "missing", "missing_series"),  # alone: not a segment
    ])  # fmt: skip
    assert policy.stalled_segments(rows, DIMS) == [("country=DE", 2)]
    assert policy.inhibited_rows(rows, DIMS, missing_day=False).tolist() == [1, 1, 0, 0, 0]
    assert policy.severity(rows, DIMS, missing_day=False) == "critical"
    silenced = rows.assign(silenced=[True, False, False, False, False])
    assert policy.stalled_segments(silenced, DIMS) == [], "a silenced series breaks the stall"


def test_severity_grows_with_how_wide_a_day_is_off():
    few = verdicts(
        [("DE", "paypal", True, "high", "duplicate")] + [("FR", "card", False, "", "")] * 9
    )
    assert policy.severity(few, DIMS, missing_day=False) == "warning"
    wide = verdicts(
        [("DE", "paypal", True, "high", "spike")] * 2 + [("FR", "card", False, "", "")] * 8
    )
    assert policy.severity(wide, DIMS, missing_day=False) == "error"
    assert policy.severity(few, DIMS, missing_day=True) == "critical"
    assert policy.inhibited_rows(few, DIMS, missing_day=True).all()


def test_with_one_dimension_the_whole_table_is_the_segment():
    rows = verdicts([("DE", "-", True, "missing", "missing_series")] * 3)
    assert policy.stalled_segments(rows, ["country"]) == [("all series", 3)]
    assert policy.inhibited_rows(rows, ["country"], missing_day=False).all()


def test_an_alert_names_a_stalled_segment_once_instead_of_each_of_its_series(tmp_path):
    from conftest import settings_in

    monitor = settings_in(tmp_path).monitor()
    rows = verdicts([
        ("DE", "paypal", True, "missing", "missing_series"),
        ("DE", "card", True, "low", "stall"),
        ("FR", "paypal", True, "low", "drop"),
        ("FR", "card", False, "", ""),
    ]).assign(count=[0, 3, 40, 100], expected_low=[50, 60, 80, 90],
              expected_high=[70, 80, 120, 110], deviation=[-9.0, -7.0, -3.0, 0.1],
              score=[-0.2, -0.1, -0.05, 0.1], silenced=False)  # fmt: skip
    decision = policy.decide(rows, monitor, missing_day=False)
    case = content.Scored(monitor, UNTIL, rows, DIMS, decision, "model v1", tmp_path, "1")
    notice = content.build(case, policy.severity(rows, DIMS, False), [])
    body = email.as_text([notice])
    assert notice.subject == f"[volume-monitor] {UNTIL}: country=DE stopped, all 2 series"
    assert "country=DE: every one of its 2 series stopped or stalled" in body
    assert "Severity: critical." in body
    assert "- FR/paypal: 40 events" in body
    assert "DE/paypal:" not in body and "DE/card:" not in body
    assert "country=DE: every one of its 2 series" in email.as_html([notice])


def test_why_a_series_was_flagged_says_how_far_outside_its_range():
    def why(count, low, high):
        return content.why_flagged(pd.Series({"count": count, "expected_low": low,
                                            "expected_high": high}))  # fmt: skip

    assert why(0, 218, 476) == "100% under its range"
    assert why(150, 200, 300) == "25% under its range"
    assert why(900, 200, 300) == "200% over its range"
    assert why(250, 200, 300) == "inside its range, moved with its group"
    assert why(5, 0, 0) == "over its range"
    assert why(5, float("nan"), float("nan")) == "no range: a series not seen in training"


def scored_series() -> pd.DataFrame:
    """Five anomalous series: +200 events (+20%), +30 (+300%), -500 (-50%), stalled, missing;
    and a normal one."""
    return pd.DataFrame(
        {
            "country": ["DE", "FR", "GB", "ES", "IT", "NL"],
            "count": [1200, 40, 500, 5, 0, 100],
            "expected": [1000.0, 10.0, 1000.0, 400.0, 300.0, 100.0],
            "direction": ["high", "high", "low", "low", "missing", ""],
            "is_anomaly": [True, True, True, True, True, False],
            "cause": ["spike", "duplicate", "drop", "stall", "missing_series", ""],
        }
    )


@pytest.mark.parametrize(
    ("gates", "kept"),
    [
        ({}, ["DE", "FR", "GB", "ES", "IT"]),
        ({"alert_min_change": 100}, ["DE", "GB", "ES", "IT"]),
        ({"alert_min_change_pct": 25}, ["FR", "GB", "ES", "IT"]),
        ({"alert_min_change": 100, "alert_min_change_pct": 25}, ["GB", "ES", "IT"]),
        ({"alert_direction": "low"}, ["GB", "ES", "IT"]),
        ({"alert_direction": "high"}, ["DE", "FR"]),
        ({"alert_direction": "high", "alert_min_change_pct": 50}, ["FR"]),
    ],
)
def test_gates_hold_back_small_moves_and_the_unwanted_direction(tmp_path, gates, kept):
    from dataclasses import replace

    from conftest import settings_in

    monitor = replace(settings_in(tmp_path).monitor(), **gates)
    gated = policy.gated(scored_series(), monitor)
    assert gated.loc[gated["is_anomaly"], "country"].tolist() == kept
    held_back = ~gated["country"].isin(kept)
    assert (gated.loc[held_back, "cause"] == "").all()
    assert gated["direction"].tolist() == scored_series()["direction"].tolist()
    assert gated["count"].tolist() == scored_series()["count"].tolist()


def test_gates_never_hold_back_a_missing_day(tmp_path):
    from dataclasses import replace

    from conftest import settings_in

    monitor = replace(settings_in(tmp_path).monitor(), alert_direction="high")
    empty = scored_series().assign(count=0, direction="missing", cause="missing_day")
    gated = policy.gated(empty, monitor)
    assert not gated["is_anomaly"].any()
    decision = policy.decide(gated.assign(silenced=False), monitor, missing_day=True)
    assert decision.alert and decision.reasons == ["missing day: the query returned no rows"]
