"""The ETL stage: regroup by OS family, complete the known series, add the calendar."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from volume_monitor import etl

WIN_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
WIN_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
MONDAY, TUESDAY, WEDNESDAY = dt.date(2026, 6, 29), dt.date(2026, 6, 30), dt.date(2026, 7, 1)


def raw_frame(rows: list[tuple]) -> pd.DataFrame:
    """A frame shaped like the checked query result."""
    frame = pd.DataFrame(rows, columns=["date", "channelid", "actioncode", "user_agent", "count"])
    return frame.assign(date=pd.to_datetime(frame["date"]), count=frame["count"].astype("int64"))


def as_records(frame: pd.DataFrame) -> list[tuple]:
    table = frame.reset_index() if "date" not in frame.columns else frame
    return [
        (pd.Timestamp(row.date).date(), row.channelid, row.actioncode, row.os_family, row.count)
        for row in table.itertuples(index=False)
    ]


@pytest.fixture
def raw() -> pd.DataFrame:
    return raw_frame(
        [
            (MONDAY, "web", "view", WIN_CHROME, 3),
            (MONDAY, "web", "view", WIN_FIREFOX, 4),
            (MONDAY, "web", "view", IPHONE, 2),
            (MONDAY, "web", "view", None, 1),
            (MONDAY, "web", "view", "curl/8.4.0", 5),
            (MONDAY, "web", "login", WIN_CHROME, 6),
            (MONDAY, "mobile", "view", WIN_FIREFOX, 7),
            (TUESDAY, "web", "view", WIN_FIREFOX, 8),
            (TUESDAY, "web", "view", WIN_CHROME, 9),
        ]
    )


@pytest.fixture
def series() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "channelid": ["web", "web", "api"],
            "actioncode": ["view", "view", "search"],
            "os_family": ["Windows", "iOS", "Linux"],
        }
    )


def test_regroup_sums_agents_of_the_same_family(raw):
    grouped = etl.regroup(raw)
    assert list(grouped.columns) == ["date", "channelid", "actioncode", "os_family", "count"]
    assert sorted(as_records(grouped)) == sorted(
        [
            (MONDAY, "mobile", "view", "Windows", 7),
            (MONDAY, "web", "login", "Windows", 6),
            (MONDAY, "web", "view", "Other", 6),
            (MONDAY, "web", "view", "Windows", 7),
            (MONDAY, "web", "view", "iOS", 2),
            (TUESDAY, "web", "view", "Windows", 17),
        ]
    )
    assert grouped["count"].dtype == "int64"
    assert int(grouped["count"].sum()) == int(raw["count"].sum())
    assert not grouped.duplicated(["date", *etl.SERIES_KEYS]).any()


def test_regroup_uses_a_given_os_family_without_parsing():
    raw = pd.DataFrame(
        {
            "date": pd.to_datetime([MONDAY, MONDAY, MONDAY, MONDAY]),
            "channelid": ["web", "web", "web", "web"],
            "actioncode": ["view"] * 4,
            "os_family": ["Windows", "Windows", None, "Mozilla/5.0 (Windows NT 10.0)"],
            "count": [1, 2, 3, 4],
        }
    )
    assert sorted(as_records(etl.regroup(raw))) == [
        (MONDAY, "web", "view", "Mozilla/5.0 (Windows NT 10.0)", 4),
        (MONDAY, "web", "view", "Other", 3),
        (MONDAY, "web", "view", "Windows", 3),
    ]


def test_complete_adds_missing_known_series_with_zero_and_keeps_unknown(series):
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime([MONDAY, MONDAY, TUESDAY]),
            "channelid": ["web", "mobile", "web"],
            "actioncode": ["view", "view", "view"],
            "os_family": ["Windows", "Android", "iOS"],
            "count": [10, 4, 3],
        }
    )
    completed = etl.complete(frame, series, [MONDAY, TUESDAY])
    assert as_records(completed) == [
        (MONDAY, "api", "search", "Linux", 0),
        (MONDAY, "mobile", "view", "Android", 4),
        (MONDAY, "web", "view", "Windows", 10),
        (MONDAY, "web", "view", "iOS", 0),
        (TUESDAY, "api", "search", "Linux", 0),
        (TUESDAY, "web", "view", "Windows", 0),
        (TUESDAY, "web", "view", "iOS", 3),
    ]
    assert completed["count"].dtype == "int64"


def test_complete_ignores_duplicate_known_series(series):
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime([MONDAY]),
            "channelid": ["web"],
            "actioncode": ["view"],
            "os_family": ["Windows"],
            "count": [5],
        }
    )
    completed = etl.complete(frame, pd.concat([series, series]), [MONDAY])
    assert len(completed) == 3
    assert not completed.duplicated(["date", *etl.SERIES_KEYS]).any()


def test_add_calendar_indexes_by_date_and_adds_weekday_and_month():
    frame = pd.DataFrame(
        {
            "date": ["2026-06-28", "2026-06-29", "2026-06-30", "2026-07-01"],
            "channelid": ["web"] * 4,
            "actioncode": ["view"] * 4,
            "os_family": ["Windows"] * 4,
            "count": [1, 2, 3, 4],
        }
    )
    with_calendar = etl.add_calendar(frame)
    assert with_calendar.index.name == "date"
    assert pd.api.types.is_datetime64_dtype(with_calendar.index)
    assert list(with_calendar.index.date) == [
        dt.date(2026, 6, 28),
        MONDAY,
        TUESDAY,
        WEDNESDAY,
    ]
    assert list(with_calendar.columns) == etl.FRAME_COLUMNS
    assert list(with_calendar["weekday"]) == [6, 0, 1, 2]
    assert list(with_calendar["month"]) == [6, 6, 6, 7]
    assert list(with_calendar["count"]) == [1, 2, 3, 4]


def test_prepare_with_a_day_without_rows_yields_every_known_series_at_zero(raw, series):
    prepared = etl.prepare(raw, series, [MONDAY, TUESDAY, WEDNESDAY])
    wednesday = prepared.loc[prepared.index == pd.Timestamp(WEDNESDAY)]
    assert sorted(
        zip(wednesday["channelid"], wednesday["actioncode"], wednesday["os_family"], strict=True)
    ) == [("api", "search", "Linux"), ("web", "view", "Windows"), ("web", "view", "iOS")]
    assert list(wednesday["count"]) == [0, 0, 0]
    assert set(wednesday["weekday"]) == {2}
    assert set(wednesday["month"]) == {7}

    tuesday = prepared.loc[prepared.index == pd.Timestamp(TUESDAY)]
    by_series = dict(
        zip(
            zip(tuesday["channelid"], tuesday["os_family"], strict=True),
            tuesday["count"],
            strict=True,
        )
    )
    assert by_series == {("api", "Linux"): 0, ("web", "Windows"): 17, ("web", "iOS"): 0}
    assert list(prepared.columns) == etl.FRAME_COLUMNS
    assert prepared["count"].dtype == "int64"


def test_prepare_with_defaults_completes_over_observed_series_and_days(raw):
    prepared = etl.prepare(raw)
    assert prepared.index.nunique() == 2
    assert len(prepared) == 2 * 5
    tuesday = prepared.loc[prepared.index == pd.Timestamp(TUESDAY)]
    assert int(tuesday["count"].sum()) == 17
    assert (tuesday["count"] == 0).sum() == 4


def test_prepare_on_an_empty_result_yields_zeros_for_known_series(series):
    empty = raw_frame([])
    prepared = etl.prepare(empty, series, [WEDNESDAY])
    assert len(prepared) == 3
    assert list(prepared["count"]) == [0, 0, 0]
    assert set(prepared.index.date) == {WEDNESDAY}


def test_inputs_are_not_mutated(raw, series):
    raw_before, series_before = raw.copy(), series.copy()
    grouped = etl.regroup(raw)
    grouped_before = grouped.copy()
    completed = etl.complete(grouped, series, [MONDAY, TUESDAY])
    completed_before = completed.copy()
    etl.add_calendar(completed)
    etl.prepare(raw, series, [MONDAY, WEDNESDAY])
    pd.testing.assert_frame_equal(raw, raw_before)
    pd.testing.assert_frame_equal(series, series_before)
    pd.testing.assert_frame_equal(grouped, grouped_before)
    pd.testing.assert_frame_equal(completed, completed_before)
    assert "os_family" not in raw.columns
    assert "weekday" not in completed.columns


def test_complete_keeps_dimensions_categorical_unless_unknown_series_join(series):
    day = pd.Timestamp("2026-03-02")
    known = pd.DataFrame(
        {"date": [day], "channelid": ["web"], "actioncode": ["view"], "os_family": ["iOS"],
         "count": [5]}
    )  # fmt: skip
    completed = etl.complete(known, series, [day])
    assert all(isinstance(completed[k].dtype, pd.CategoricalDtype) for k in etl.SERIES_KEYS)
    assert len(completed) == len(series.drop_duplicates())
    web = completed[(completed["channelid"] == "web") & (completed["os_family"] == "iOS")]
    assert web["count"].tolist() == [5]
    stranger = known.assign(channelid="fax")
    mixed = etl.complete(stranger, series, [day])
    assert "fax" in set(mixed["channelid"].astype(str))
    assert not any(isinstance(mixed[k].dtype, pd.CategoricalDtype) for k in etl.SERIES_KEYS)


def test_gather_sums_the_chunks_of_a_window_like_one_regroup(tmp_path):
    """Chunks split a day's series anywhere (the same series in several chunks): whatever the
    ceiling makes it do on the way (here a summing every 20 rows), the result is one row per
    date and series, with the counts of a single regroup over everything."""
    import numpy as np

    rng = np.random.default_rng(7)
    agents = [WIN_CHROME, WIN_FIREFOX, IPHONE]
    rows = [
        (day, f"c{rng.integers(12)}", f"a{rng.integers(4)}", agents[rng.integers(3)],
         int(rng.integers(1, 50)))
        for day in (MONDAY, TUESDAY, WEDNESDAY) for _ in range(400)
    ]  # fmt: skip
    raw = raw_frame(rows)
    chunks = [raw.iloc[start : start + 37] for start in range(0, len(raw), 37)]
    gathered = etl.gather(chunks, None, max_series=100)
    expected = etl.regroup(raw)
    keys = ["date", *etl.SERIES_KEYS]
    assert not gathered.duplicated(keys).any()
    pd.testing.assert_frame_equal(
        gathered.sort_values(keys).reset_index(drop=True), expected.reset_index(drop=True)
    )
    assert gathered["count"].sum() == raw["count"].sum()


def test_gather_refuses_a_day_with_more_series_than_the_ceiling():
    from volume_monitor.errors import TooManySeriesError

    rows = [(TUESDAY, f"user-{n}", "view", WIN_CHROME, 1) for n in range(300)]
    raw = raw_frame(rows)
    chunks = (raw.iloc[start : start + 10] for start in range(0, len(raw), 10))
    with pytest.raises(TooManySeriesError) as caught:
        etl.gather(chunks, None, max_series=100)
    message = str(caught.value)
    assert message.startswith("the query gave at least ") and "\n" not in message
    assert f"series for {TUESDAY}, more than VM_MAX_SERIES (100)" in message
    found = int(message.split("at least ")[1].split()[0].replace(",", ""))
    assert 100 < found <= 200, "refused as soon as the ceiling is passed, not at the end"
    days = [MONDAY + dt.timedelta(days=n % 3) for n in range(270)]
    many_days = raw_frame(
        [(day, f"c{n // 3}", "view", WIN_CHROME, 1) for n, day in enumerate(days)]
    )
    assert len(etl.gather([many_days], None, max_series=100)) == 270, "the ceiling is per day"
