"""The labeled benchmark: injected faults, metric arithmetic, MLflow runs per detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volume_monitor import evaluate
from volume_monitor.etl import SERIES_KEYS


@pytest.fixture(scope="module")
def scenario() -> evaluate.Scenario:
    return evaluate.make_scenario(seed=5, days=200, held_back=60, events_per_day=5000)


def test_scenario_injects_every_fault_kind_inside_the_window(scenario):
    labels = scenario.labels
    assert set(labels["kind"]) == {
        "duplicate", "partial_duplicate", "stall", "stopped", "missing_day", "leak",
        "leak_onset", "day_drop", "channel_move", "repeat_incident", "new_channel", "holiday",
        "correlated_move", "late",
    }  # fmt: skip
    assert (labels["date"] >= scenario.window_start).all()
    missing = labels.loc[labels["kind"] == "missing_day", "date"].unique()
    assert len(missing) == 1
    assert scenario.counts[scenario.counts["date"] == missing[0]].empty
    assert labels.loc[labels["kind"] == "leak", "date"].nunique() == 4, "drops of 30% or more"
    assert (labels.loc[labels["kind"] == "new_channel", "channelid"] == "partner").all()
    history = scenario.counts[scenario.counts["date"] < scenario.window_start]
    assert "partner" not in set(history["channelid"])
    per_day = labels.groupby("date")["kind"].nunique()
    assert (per_day == 1).all(), "one kind of day at a time, so each is measured alone"


def channel_ratio(scenario, day, channel, action=None, skip_weeks=0) -> float:
    """The channel's (or channel × action's) count on ``day`` against the median of the same
    weekday in the four weeks before (after skipping ``skip_weeks``)."""
    counts = scenario.counts[scenario.counts["channelid"] == channel]
    if action is not None:
        counts = counts[counts["actioncode"] == action]
    totals = counts.groupby("date")["count"].sum()
    earlier = [day - pd.Timedelta(weeks=skip_weeks + k) for k in range(1, 5)]
    return totals.get(day, 0) / totals.reindex(earlier).median()


def first_of(scenario, kind: str) -> pd.Series:
    return scenario.labels[scenario.labels["kind"] == kind].iloc[0]


def test_duplicate_doubles_the_counts_of_its_channel(scenario):
    duplicated = first_of(scenario, "duplicate")
    assert 1.7 < channel_ratio(scenario, duplicated["date"], duplicated["channelid"]) < 2.3


def test_a_whole_channel_moves_50_to_60_percent(scenario):
    moved = first_of(scenario, "channel_move")
    assert 1.35 < channel_ratio(scenario, moved["date"], moved["channelid"]) < 1.8


def test_the_repeated_incident_first_ran_two_weeks_inside_the_training_window(scenario):
    repeat = first_of(scenario, "repeat_incident")
    channel, action = repeat["channelid"], repeat["actioncode"]
    assert 1.7 < channel_ratio(scenario, repeat["date"], channel, action=action) < 2.3
    first_day = scenario.window_start - pd.Timedelta(days=10 + 13)
    ratios = [
        channel_ratio(scenario, first_day + pd.Timedelta(days=k), channel, action, skip_weeks=2)
        for k in range(14)
    ]
    assert all(1.6 < r < 2.5 for r in ratios), ratios
    assert channel_ratio(scenario, first_day - pd.Timedelta(days=1), channel, action) < 1.3


def test_holidays_are_the_countrys_and_change_each_channel_as_every_year(scenario):
    import holidays

    window = pd.date_range(scenario.window_start, scenario.last_day)
    us = holidays.country_holidays("US", years=[2025, 2026])
    expected = sorted(d for d in window if d.date() in us)
    labeled = sorted(scenario.labels.loc[scenario.labels["kind"] == "holiday", "date"].unique())
    assert labeled == expected and len(expected) == 2  # Memorial Day and Juneteenth 2026
    in_history = [d for d in scenario.holidays if d < scenario.window_start.date()]
    assert len(in_history) >= 3, "past holidays to learn from"
    for day in [*expected, pd.Timestamp(in_history[-1])]:
        assert 0.35 < channel_ratio(scenario, day, "web") < 0.7
        assert 0.95 < channel_ratio(scenario, day, "mobile") < 1.4


def test_correlated_moves_and_the_late_day_change_a_whole_channel_or_day_a_little(scenario):
    moves = scenario.labels[scenario.labels["kind"] == "correlated_move"]
    assert moves["date"].nunique() >= 5
    for (day, channel), _ in moves.groupby(["date", "channelid"]):
        assert 0.65 < channel_ratio(scenario, day, channel) < 1.4
    [late] = scenario.late_days
    assert set(scenario.labels.loc[scenario.labels["kind"] == "late", "date"]) == {
        pd.Timestamp(late)
    }
    for channel in ("web", "mobile"):
        assert 0.75 < channel_ratio(scenario, pd.Timestamp(late), channel) < 0.95


def scored_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["date", "kind", "is_anomaly", "score", "deviation"])
    return frame.assign(scenario=1, date=pd.to_datetime(frame["date"]))


def test_metrics_arithmetic():
    scored = scored_frame(
        [
            ("2026-01-01", "duplicate", True, -0.5, 12.0),  # hit
            ("2026-01-01", "duplicate", False, 0.1, -3.0),  # miss
            ("2026-01-01", "", False, 0.2, 1.0),
            ("2026-01-02", "", True, -0.1, -6.0),  # false alarm on a normal day
            ("2026-01-02", "", False, 0.3, 0.5),
            ("2026-01-03", "missing_day", True, -0.4, -80.0),
            ("2026-01-03", "new_channel", False, 0.0, np.nan),
            ("2026-01-04", "stopped", True, -0.9, -50.0),
            ("2026-01-04", "new_channel", True, -0.2, np.nan),  # paged a new channel
        ]
    )
    result = evaluate.metrics(scored)
    assert result["series_precision"] == pytest.approx(3 / 5)
    assert result["series_recall"] == pytest.approx(3 / 4)
    assert result["series_f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert result["day_precision"] == pytest.approx(3 / 4)
    assert result["day_recall"] == 1.0
    assert result["false_alerts_per_30_days"] == pytest.approx(30.0)  # 1 alert on 1 normal day
    assert result["missing_days_caught"] == 1.0 and result["stopped_series_caught"] == 1.0
    assert result["new_channel_paged"] == 1.0
    truth = np.array([1, 1, 0, 0, 0, 1, 0, 1, 0])
    ranks = -scored["score"].to_numpy()
    pairs = [(p, n) for p in ranks[truth == 1] for n in ranks[truth == 0]]
    expected_auc = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert result["roc_auc"] == pytest.approx(expected_auc)
    # |deviation| ranks every fault above every normal row except 3 spreads below 6: 19 of 20.
    assert result["deviation_roc_auc"] == pytest.approx(19 / 20)


def test_baseline_detector_beats_the_seed_and_catches_outages(scenario):
    results = {}
    for name in ("seed", "iforest_baseline"):
        scored = evaluate.score_scenario(evaluate.DETECTORS[name], scenario)
        results[name] = evaluate.metrics(scored.assign(scenario=5))
        assert (scored[scored["kind"] == "new_channel"]["cause"] == "new_series").all()
    baseline, seed = results["iforest_baseline"], results["seed"]
    assert baseline["series_f1"] > seed["series_f1"] + 0.3
    assert baseline["missing_days_caught"] == 1.0
    assert baseline["stopped_series_caught"] == 1.0
    assert baseline["new_channel_paged"] == 0.0
    assert baseline["roc_auc"] > 0.8


def test_evaluate_command_prints_the_table_and_logs_one_run_per_detector(
    tmp_path, monkeypatch, capsys
):
    from mlflow.tracking import MlflowClient

    from volume_monitor import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--seeds", "4"]) == 0
    printed = capsys.readouterr().out
    assert "series_f1" in printed and "false_alerts_per_30_days" in printed
    expected = (
        f"logged {len(evaluate.DETECTORS)} runs with plots to experiment volume-monitor-evaluate"
    )
    assert expected in printed
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("volume-monitor-evaluate")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["detector"] for r in runs) == sorted(evaluate.DETECTORS)
    table = evaluate.run_benchmark((4,))[0]
    plots = {"histogram.png", "roc.png", "scores_over_time.png", "scores_by_kind.png"}
    for run in runs:
        logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
        assert logged == plots
        png = client.download_artifacts(run.info.run_id, "plots/roc.png", str(tmp_path))
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        f1 = table.loc[run.data.params["detector"], "series_f1"]
        assert run.data.metrics["series_f1"] == pytest.approx(f1)


def test_series_keys_of_labels_match_the_etl(scenario):
    assert list(scenario.labels.columns) == ["date", *SERIES_KEYS, "kind"]


def test_training_runs_log_the_benchmark_of_their_own_history(trained_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{trained_store}/mlruns/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("volume-monitor").experiment_id])
    metrics = run.data.metrics
    for key in (
        "bench_series_f1",
        "bench_day_recall",
        "bench_false_alerts_per_30_days",
        "bench_missing_days_caught",
        "bench_roc_auc",
    ):
        assert key in metrics
    assert metrics["bench_missing_days_caught"] == 1.0
    assert 0.5 < metrics["bench_series_f1"] <= 1.0


def test_self_benchmark_is_skipped_on_a_short_history(scenario):
    short = scenario.counts[scenario.counts["date"] >= scenario.window_start]
    assert evaluate.self_benchmark(short, {}) == {}
