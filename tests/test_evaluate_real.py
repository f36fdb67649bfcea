"""The real development set: the public data sets as the project reads them, the rolling
windows with their injected faults, the line to beat, and ``volume-monitor evaluate --real``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volume_monitor.errors import ConfigError
from volume_monitor.evaluate import real

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"


@pytest.fixture(scope="module")
def births() -> real.RealSet:
    return real.births(DATA)


@pytest.fixture(scope="module")
def bikes() -> real.RealSet:
    return real.bikes(DATA)


@pytest.fixture
def short_data(tmp_path) -> Path:
    """The bikes, and the births of 1969-1970 only: two sets of few windows."""
    shutil.copy(DATA / "dc_bike_sharing_2011_2012.csv", tmp_path)
    text = (DATA / "us_births_1969_1988.csv").read_text().splitlines()
    kept = [line for line in text if line.startswith(("year", "1969,", "1970,"))]
    (tmp_path / "us_births_1969_1988.csv").write_text("\n".join(kept) + "\n")
    return tmp_path


def test_births_are_one_row_per_real_day_and_sex(births, caplog):
    counts = births.counts
    assert len(counts) == 7305 * 2, "1969-01-01..1988-12-31, F and M"
    assert set(counts["gender"]) == {"F", "M"}
    assert counts.groupby("date").size().eq(2).all()
    first = counts[counts["date"] == pd.Timestamp("1969-01-01")].set_index("gender")["count"]
    assert first.to_dict() == {"F": 4046, "M": 4440}, "as the file says"


def test_days_that_do_not_exist_are_left_out_with_a_warning(caplog):
    with caplog.at_level("WARNING"):
        real.births(DATA)
    assert "457 rows name a date that does not exist (7433 births); left out" in caplog.text


def test_bikes_are_casual_and_registered_riders_with_the_storm_as_a_real_event(bikes):
    counts = bikes.counts
    assert len(counts) == 731 * 2
    storm = counts[counts["date"] == pd.Timestamp("2012-10-29")].set_index("rider")["count"]
    assert storm.to_dict() == {"casual": 2, "registered": 20}
    assert bikes.events == (pd.Timestamp("2012-10-29"), pd.Timestamp("2012-10-30"))


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"has no us_births_1969_1988\.csv in"):
        real.births(tmp_path)


def test_windows_train_on_the_year_before_and_score_the_next_sixty_days(births):
    found = real.windows(births)
    assert len(found) == 115
    first, second = found[0], found[1]
    assert first.days[0] == pd.Timestamp("1970-01-01") and len(first.days) == 60
    assert second.days[0] == first.days[-1] + pd.Timedelta(days=1), "one after another"
    assert first.training["date"].min() == pd.Timestamp("1969-01-01")
    assert first.training["date"].max() == pd.Timestamp("1969-12-31")
    assert not first.scored["date"].isin(first.training["date"]).any()
    assert {w.half for w in found if w.days[0].year < 1979} == {"tune"}
    assert {w.half for w in found if w.days[0].year >= 1979} == {"report"}


def test_each_window_holds_every_fault_on_its_planned_days_only(births):
    window = real.windows(births)[4]
    original = births.counts.set_index(["date", "gender"])["count"]
    injected = window.scored.set_index(["date", "gender"])["count"]
    labels = window.labels.set_index(["date", "gender"])["kind"]
    assert set(labels) == {real.CLEAN, *(plan.kind for plan in real.FAULTS)}
    for (day, gender), kind in labels.items():
        before, after = original[(day, gender)], injected.get((day, gender), 0)
        plan = next((p for p in real.FAULTS if p.kind == kind), None)
        factor = 1.0 if plan is None else plan.factor
        assert after == round(before * factor), (day, gender, kind)
    missing = window.labels.loc[window.labels["kind"] == "missing_day", "date"].unique()
    assert len(missing) == 1 and not window.scored["date"].eq(missing[0]).any()
    stopped = window.labels[window.labels["kind"] == "stop"]
    assert stopped["date"].nunique() == 3 and stopped["gender"].nunique() == 1
    assert window.labels.loc[window.labels["kind"] == "leak", "date"].nunique() == 5


def test_single_series_faults_take_each_series_in_turn(births):
    hit = {
        window.number: window.labels.loc[window.labels["kind"] == "duplicate", "gender"].iloc[0]
        for window in real.windows(births)[:4]
    }
    assert hit == {0: "F", 1: "M", 2: "F", 3: "M"}


def test_the_median_mad_rule_flags_what_is_four_robust_spreads_from_its_weekday():
    days = pd.date_range("2026-01-05", periods=70)  # ten weeks from a Monday
    steady = np.tile([100, 104, 96, 100, 98, 102, 100], 10)
    training = pd.DataFrame({"date": days[:63], "key": "a", "count": steady[:63]})
    scored = pd.DataFrame({"date": days[63:], "key": "a", "count": [100, 160, 96, 70, 0, 102, 100]})
    out = real.median_mad()(training, scored.iloc[[0, 1, 2, 3, 5, 6]], days[63:], "key")
    # Monday: median 100, MAD 0 (spread floored at one event); Tuesday: 104, 0; Thursday 100.
    assert out.set_index("date")["is_anomaly"].tolist() == [
        False,
        True,
        False,
        True,
        True,
        False,
        False,
    ]


def test_the_metrics_count_clean_days_and_faults_per_kind():
    labels = pd.DataFrame(
        {
            "window": 0,
            "date": pd.to_datetime(["2026-01-01"] * 2 + ["2026-01-02"] * 2 + ["2026-01-03"] * 2),
            "key": ["a", "b"] * 3,
            "kind": ["", "", "duplicate", "", "stall", "stall"],
            "is_anomaly": [True, False, True, True, False, True],
        }
    )
    row = real.summarise(labels)
    assert row["clean_days"] == 1 and row["clean_alerts_per_60"] == 60.0
    assert row["recall_duplicate"] == 1.0 and row["days_duplicate"] == 1.0
    assert row["recall_stall"] == 0.5 and row["days_stall"] == 1.0


def test_evaluate_real_prints_both_sets_halves_and_the_line_to_beat(
    short_data, tmp_path, monkeypatch, capsys
):
    from mlflow.tracking import MlflowClient

    from volume_monitor import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--real", str(short_data)]) == 0
    printed = capsys.readouterr().out
    header = printed.splitlines()[:3]
    assert "births" in header[0] and "bikes" in header[0]
    assert "tune" in header[1] and "report" in header[1]
    assert "volume_monitor" in header[2] and "median_mad" in header[2]
    clean = next(line for line in printed.splitlines() if line.startswith("clean_days"))
    # births 1970: six windows of 60 days, 46 clean days each; bikes: 4 tune windows (the
    # fourth starts on 29 June), 2 report windows less the storm's two days.
    assert clean.split()[1:] == ["276.000", "276.000", "184.000", "90.000", "184.000", "90.000"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("volume-monitor-evaluate")
    runs = {r.data.params["detector"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"volume_monitor", "median_mad"}
    assert runs["volume_monitor"].data.metrics["bikes_report_clean_days"] == 90.0


def test_no_fault_lands_on_a_real_event(bikes):
    storm = real.windows(bikes)[5]
    on_storm = storm.labels[storm.labels["date"].isin(bikes.events)]
    assert set(on_storm["kind"]) == {real.EVENT}
    assert (storm.labels["kind"] == "duplicate").sum() == 1, "moved to the day after"
