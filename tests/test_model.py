"""The detector on seeded synthetic series: expected range, direction, cause, new series,
unseen calendar values, and a save/load round trip with only the trusted types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io

from volume_monitor.detect.detector import SEED_PARAMS, TRUSTED_TYPES, VolumeDetector

SERIES = [
    ("web", "view", "Windows", 1000),
    ("web", "view", "iOS", 400),
    ("api", "login", "Other", 60),
]
WINDOWS, IOS, API = (s[:3] for s in SERIES)
TRAIN_DAYS = pd.date_range("2026-01-05", periods=84)  # 12 weeks, January to March
SCORE_DAY = pd.Timestamp("2026-07-15")  # a month never seen in training


def frame(days, counts_by_series) -> pd.DataFrame:
    rows = [
        (day, channel, action, family, count)
        for day in days
        for (channel, action, family), count in counts_by_series(day).items()
    ]
    data = pd.DataFrame(rows, columns=["date", "channelid", "actioncode", "os_family", "count"])
    data = data.assign(weekday=data["date"].dt.day_of_week, month=data["date"].dt.month)
    return data.set_index("date")


def normal_counts(seed: int):
    rng = np.random.default_rng(seed)

    def counts(day):
        weekend = 0.7 if day.day_of_week >= 5 else 1.0
        return {s[:3]: int(rng.poisson(s[3] * weekend)) for s in SERIES}

    return counts


@pytest.fixture(scope="module")
def detector() -> VolumeDetector:
    return VolumeDetector().fit(frame(TRAIN_DAYS, normal_counts(1)))


def score_one_day(detector, counts: dict) -> pd.DataFrame:
    day = frame([SCORE_DAY], lambda _: counts)
    return detector.score(day).set_index(["channelid", "actioncode", "os_family"])


def test_normal_day_is_within_range_and_not_anomalous(detector):
    scored = score_one_day(detector, {s[:3]: s[3] for s in SERIES})
    assert not scored["is_anomaly"].any()
    assert (scored["direction"] == "").all()
    windows = scored.loc[("web", "view", "Windows")]
    assert windows["expected_low"] < 1000 < windows["expected_high"]
    assert windows["expected_low"] > 750 and windows["expected_high"] < 1350  # about ±4 spreads


def test_doubling_is_high_duplicate_and_stop_is_missing(detector):
    scored = score_one_day(
        detector,
        {
            ("web", "view", "Windows"): 2000,
            ("web", "view", "iOS"): 400,
            ("api", "login", "Other"): 0,
        },
    )
    doubled = scored.loc[("web", "view", "Windows")]
    assert doubled["is_anomaly"] and doubled["direction"] == "high"
    assert doubled["cause"] == "duplicate"
    assert doubled["count"] > doubled["expected_high"]
    stopped = scored.loc[("api", "login", "Other")]
    assert stopped["is_anomaly"] and stopped["direction"] == "missing"
    assert stopped["cause"] == "missing_series"
    assert not scored.loc[("web", "view", "iOS")]["is_anomaly"]


def test_doubling_of_a_small_series_is_as_visible_as_of_a_big_one(detector):
    scored = score_one_day(
        detector,
        {
            ("web", "view", "Windows"): 1000,
            ("web", "view", "iOS"): 800,
            ("api", "login", "Other"): 60,
        },
    )
    assert scored.loc[("web", "view", "iOS")]["direction"] == "high"
    assert scored.loc[("web", "view", "iOS")]["is_anomaly"]


def test_drop_to_a_tenth_is_a_stall_and_a_spike_is_not_a_duplicate(detector):
    scored = score_one_day(
        detector,
        {
            ("web", "view", "Windows"): 80,
            ("web", "view", "iOS"): 1000,
            ("api", "login", "Other"): 60,
        },
    )
    assert scored.loc[("web", "view", "Windows")]["cause"] == "stall"
    assert scored.loc[("web", "view", "Windows")]["direction"] == "low"
    assert scored.loc[("web", "view", "iOS")]["cause"] == "spike"


def test_a_few_events_on_a_tiny_series_do_not_page():
    tiny = VolumeDetector().fit(frame(TRAIN_DAYS, lambda _: {("api", "login", "Other"): 6}))
    scored = tiny.score(frame([SCORE_DAY], lambda _: {("api", "login", "Other"): 14}))
    assert not scored["is_anomaly"].any()
    assert scored["expected_high"].item() >= 16


def test_new_series_is_reported_not_flagged_and_unseen_month_does_not_crash(detector):
    counts = {s[:3]: s[3] for s in SERIES} | {("partner", "view", "Android"): 5000}
    scored = score_one_day(detector, counts)
    new = scored.loc[("partner", "view", "Android")]
    assert new["cause"] == "new_series" and not new["is_anomaly"]
    assert np.isnan(new["expected_low"]) and new["direction"] == ""
    assert scored["is_anomaly"].sum() == 0


def test_whole_day_missing_is_caused_missing_day(detector):
    scored = score_one_day(detector, {s[:3]: 0 for s in SERIES})
    big = scored.loc[("web", "view", "Windows")]
    assert big["is_anomaly"] and big["cause"] == "missing_day"


def test_seed_configuration_uses_the_seed_features():
    seed = VolumeDetector(features="seed", **SEED_PARAMS).fit(frame(TRAIN_DAYS, normal_counts(2)))
    assert seed.outliers_.scaler_.n_features_in_ == 6  # three codes, weekday, month, count
    scored = seed.score(frame([SCORE_DAY], normal_counts(3)))
    assert set(scored.columns) >= {"score", "is_anomaly", "expected_low", "direction", "cause"}
    with pytest.raises(ValueError, match="features"):
        VolumeDetector(features="other").fit(frame(TRAIN_DAYS, normal_counts(2)))


def test_a_modest_shift_of_a_whole_channel_is_caught_through_the_group():
    channel = [
        ("web", a, f, 1000) for a in ("view", "search") for f in ("Windows", "iOS", "Android")
    ]
    rng = np.random.default_rng(7)

    def counts(factor):
        return lambda _: {s[:3]: int(rng.poisson(s[3] * factor)) for s in channel}

    detector = VolumeDetector().fit(frame(TRAIN_DAYS, counts(1.0)))
    shifted = detector.score(frame([SCORE_DAY], counts(1.2)))
    assert shifted["is_anomaly"].all(), "every series of the channel moved +20%"
    assert (shifted["direction"] == "high").all()
    assert (shifted["count"] <= shifted["expected_high"]).any(), "some only as a group"
    alone = VolumeDetector(group_threshold=0).fit(frame(TRAIN_DAYS, counts(1.0)))
    assert not alone.score(frame([SCORE_DAY], counts(1.2)))["is_anomaly"].all()
    normal_days = pd.date_range(SCORE_DAY, periods=600)
    paged = detector.score(frame(normal_days, counts(1.0))).groupby("date")["is_anomaly"].any()
    budget = detector.alert_budget / 30  # false alert days per normal day
    assert paged.mean() <= budget, f"{paged.sum()} of {len(paged)} normal days paged"


@pytest.mark.parametrize("method", ["iforest", "ocsvm", "lof", "zscore"])
def test_every_method_flags_a_doubling_and_round_trips_with_trusted_types(method, tmp_path):
    detector = VolumeDetector(method=method).fit(frame(TRAIN_DAYS, normal_counts(5)))
    scored = score_one_day(detector, {WINDOWS: 2000, IOS: 400, API: 60})
    assert scored.loc[WINDOWS]["is_anomaly"] and scored.loc[WINDOWS]["score"] < 0
    assert not scored.loc[IOS]["is_anomaly"]
    path = tmp_path / "model.skops"
    skops.io.dump(detector, path)
    assert set(skops.io.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)
    loaded = skops.io.load(path, trusted=TRUSTED_TYPES)
    day = frame([SCORE_DAY], normal_counts(6))
    pd.testing.assert_frame_equal(loaded.score(day), detector.score(day))
    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
        skops.io.load(path, trusted=[])


def test_zscore_needs_baseline_features():
    with pytest.raises(ValueError, match="method"):
        VolumeDetector(method="zscore", features="seed").fit(frame(TRAIN_DAYS, normal_counts(2)))


def test_deviation_says_how_far_and_which_way(detector):
    new = ("partner", "view", "Android")
    scored = score_one_day(detector, {WINDOWS: 2000, IOS: 400, API: 0, new: 50})
    assert scored.loc[WINDOWS]["deviation"] > 10, "a doubling of a big series is many spreads"
    assert abs(scored.loc[IOS]["deviation"]) < 3
    assert scored.loc[API]["deviation"] < -10
    assert np.isnan(scored.loc[new]["deviation"])


def test_the_threshold_is_set_by_contamination_or_by_a_score_cutoff():
    train = frame(TRAIN_DAYS, normal_counts(2))
    by_share = VolumeDetector(features="seed", **SEED_PARAMS).fit(train)
    scores = by_share.score(train)["score"]
    assert 0.12 <= (scores < 0).mean() <= 0.18, "contamination 0.15"
    raw = scores + by_share.outliers_.offset_
    cutoff = float(np.quantile(raw, 0.05))
    by_cutoff = VolumeDetector(features="seed", score_cutoff=cutoff, **SEED_PARAMS).fit(train)
    cut_scores = by_cutoff.score(train)["score"]
    np.testing.assert_allclose(cut_scores, raw - cutoff)
    assert 0.04 <= by_cutoff.score(train)["is_anomaly"].mean() <= 0.06


@pytest.mark.parametrize(
    ("params", "flagged"),
    [
        ({}, True),
        ({"score_cutoff": -1.0}, False),  # no Isolation Forest score is that low
        ({"score_cutoff": 0.0}, True),  # every row passes: the expected range decides
        ({"method": "zscore", "score_cutoff": -10.0}, True),
        ({"method": "zscore", "score_cutoff": -30.0}, False),
    ],
)
def test_a_score_cutoff_decides_which_out_of_range_rows_are_anomalies(params, flagged):
    detector = VolumeDetector(group_threshold=0, **params).fit(frame(TRAIN_DAYS, normal_counts(5)))
    doubled = score_one_day(detector, {WINDOWS: 2000, IOS: 400, API: 60}).loc[WINDOWS]
    assert doubled["direction"] == "high" and doubled["count"] > doubled["expected_high"]
    assert doubled["is_anomaly"] == flagged
    assert (doubled["score"] < 0) == flagged
    if params.get("method") == "zscore":
        expected = -abs(doubled["deviation"]) - params["score_cutoff"]
        assert doubled["score"] == pytest.approx(expected)


@pytest.mark.parametrize("days", [60, 120, 250, 400])
def test_training_windows_from_60_to_400_days(days):
    history = pd.date_range(end="2026-06-30", periods=days)
    detector = VolumeDetector().fit(frame(history, normal_counts(days)))
    after = pd.date_range("2026-07-01", periods=14)
    normal = detector.score(frame(after, normal_counts(days + 1)))
    assert normal["is_anomaly"].sum() == 0, "two normal weeks after training"
    windows = normal[normal["channelid"].eq("web") & normal["os_family"].eq("Windows")]
    weekday = windows[windows["weekday"] < 5]
    assert (weekday["expected_low"] < 1000).all() and (weekday["expected_high"] > 1000).all()
    broken = score_one_day(detector, {WINDOWS: 2000, IOS: 20, API: 0})
    assert broken["is_anomaly"].all()
    assert list(broken["direction"]) == ["high", "low", "missing"]
    assert list(broken["cause"]) == ["duplicate", "stall", "missing_series"]


def test_latest_rows_are_each_series_and_weekdays_last_by_date():
    from volume_monitor.detect.baseline import latest_rows

    rng = np.random.default_rng(4)
    rows = pd.DataFrame(
        {
            "s": rng.integers(0, 30, 3000),
            "weekday": rng.integers(0, 7, 3000),
            "date": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.permutation(3000), "D"),
        }
    )
    expected = rows.sort_values("date").groupby(["s", "weekday"]).tail(4).index
    found = latest_rows(*(rows[c].to_numpy() for c in ("s", "weekday", "date")), 4)
    assert sorted(found) == sorted(expected)
    assert len(found) < len(rows)


def test_group_medians_match_pandas_and_skip_missing_values():
    from volume_monitor.detect.groups import group_medians

    rng = np.random.default_rng(5)
    group = rng.integers(0, 40, 5000)
    group[group == 7] = 8  # group 7 has no rows
    values = rng.normal(size=5000)
    values[rng.random(5000) < 0.3] = np.nan
    values[group == 9] = np.nan  # group 9 has only missing values
    medians, counts = group_medians(group, values)
    by_group = pd.Series(values).groupby(group)
    assert np.allclose(medians, by_group.median().reindex(range(40)), equal_nan=True)
    assert list(counts) == list(by_group.count().reindex(range(40), fill_value=0))
    assert np.isnan(medians[7]) and np.isnan(medians[9]) and counts[7] == counts[9] == 0
