"""The results stage: scores.csv columns and order, atomic writes, summaries, the histogram."""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volume_monitor import files, plots, results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scored() -> pd.DataFrame:
    """Scored rows in a shuffled column order with an extra column that must not be written."""
    return pd.DataFrame(
        {
            "score": [0.12, -0.30, 0.05, -0.02, 0.20],
            "deviation": [0.5, 8.0, -0.3, -40.0, 1.0],
            "extra": ["x"] * 5,
            "date": pd.to_datetime(["2026-06-30"] * 5),
            "channelid": ["web", "web", "mobile", "api", "mobile"],
            "actioncode": ["view", "search", "view", "login", "search"],
            "os_family": ["Windows", "iOS", "Android", "Other", "iOS"],
            "count": [100, 400, 50, 0, 30],
            "expected_low": [90.0, 150.0, 45.0, 10.0, 25.0],
            "expected_high": [110.0, 210.0, 60.0, 20.0, 35.0],
            "is_anomaly": [False, True, False, True, False],
            "direction": ["", "high", "", "missing", ""],
            "cause": ["", "duplicate", "", "missing_series", ""],
        }
    )


def test_write_scores_columns_and_order(tmp_path, scored):
    path = results.write_scores(tmp_path, scored)
    assert path == tmp_path / results.SCORES_FILE
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == results.SCORE_COLUMNS
    table = pd.read_csv(path, keep_default_na=False)
    assert list(table.columns) == results.SCORE_COLUMNS
    assert list(table["is_anomaly"]) == [True, True, False, False, False]
    # Anomalies by the size of their deviation (40 spreads before 8), then the rest by score.
    assert list(table["score"]) == [-0.02, -0.30, 0.05, 0.12, 0.20]
    assert list(table["channelid"]) == ["api", "web", "mobile", "web", "mobile"]
    assert list(table["cause"]) == ["missing_series", "duplicate", "", "", ""]
    assert "deviation" not in table.columns
    assert set(table["date"]) == {"2026-06-30"}
    assert "extra" not in table.columns
    assert sorted(p.name for p in tmp_path.iterdir()) == [results.SCORES_FILE]


def test_labels_a_spreadsheet_would_run_start_with_a_quote(tmp_path, scored):
    labels = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "plain"]
    results.write_scores(tmp_path, scored.assign(channelid=labels))
    table = pd.read_csv(tmp_path / results.SCORES_FILE, keep_default_na=False, dtype=str)
    assert sorted(table["channelid"]) == sorted(
        ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)", "plain"]
    )
    assert list(table["count"]) == ["0", "400", "50", "100", "30"], "numbers stay numbers"


def test_write_scores_does_not_change_the_frame(tmp_path, scored):
    before = scored.copy()
    results.write_scores(tmp_path, scored)
    pd.testing.assert_frame_equal(scored, before)


def test_write_scores_missing_a_column_fails_without_a_file(tmp_path, scored):
    with pytest.raises(KeyError, match="cause"):
        results.write_scores(tmp_path, scored.drop(columns=["cause"]))
    assert not (tmp_path / results.SCORES_FILE).exists()


def test_write_atomic_replaces_the_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old", encoding="utf-8")
    files.write_atomic(path, lambda p: p.write_text("new", encoding="utf-8"))
    assert path.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("old,good,content\n", encoding="utf-8")

    def broken(temporary):
        temporary.write_text("half a fi", encoding="utf-8")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.write_atomic(path, broken)
    assert path.read_text(encoding="utf-8") == "old,good,content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_write_atomic_leaves_nothing_when_a_new_file_fails(tmp_path):
    path = tmp_path / "day" / "summary.json"

    def broken(temporary):
        temporary.write_text("{", encoding="utf-8")
        raise OSError("no space left")

    with pytest.raises(OSError, match="no space left"):
        files.write_atomic(path, broken)
    assert list(path.parent.iterdir()) == []


def test_summary_round_trip(tmp_path):
    summary = {"date": dt.date(2026, 6, 30), "rows": 41, "anomalies": 2, "alert": True}
    results.write_summary(tmp_path, summary)
    assert results.read_summary(tmp_path) == {
        "date": "2026-06-30",
        "rows": 41,
        "anomalies": 2,
        "alert": True,
    }


def test_read_summary_missing_is_none(tmp_path):
    assert results.read_summary(tmp_path) is None
    assert results.read_summary(tmp_path / "no" / "such" / "day") is None


@pytest.mark.parametrize(
    "content", [b"", b'{"date": "2026-06-30", "rows": ', b"not json", b"\xff\xfe\x00garbage"]
)
def test_read_summary_corrupt_is_none(tmp_path, content):
    (tmp_path / results.SUMMARY_FILE).write_bytes(content)
    assert results.read_summary(tmp_path) is None


def test_day_dir():
    assert results.day_dir(Path("/r"), dt.date(2026, 6, 3)) == Path("/r/default/2026-06-03")
    assert results.day_dir(Path("/r"), dt.date(2026, 6, 3), "orders") == Path(
        "/r/orders/2026-06-03"
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_histogram_writes_a_real_png(tmp_path):
    scores = np.random.default_rng(2019).normal(0.05, 0.08, 300)
    path = plots.plot_histogram(scores, tmp_path / "histogram.png", "2026-06-30", 0.15)
    assert path == tmp_path / "histogram.png"
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    assert png_size(data) == (800, 450)
    assert data[-8:-4] == b"IEND"
    assert [p.name for p in tmp_path.iterdir()] == ["histogram.png"]


@pytest.mark.parametrize("scores", [[], [0.1], [-0.2, -0.1], [0.0, 0.0, 0.0]])
def test_plot_histogram_degenerate_scores(tmp_path, scores):
    path = plots.plot_histogram(np.array(scores), tmp_path / "h.png", "edge")
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000


def test_write_summary_is_json_with_trailing_newline(tmp_path):
    path = results.write_summary(tmp_path, {"reasons": ["a", "b"], "notified": False})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert json.loads(text) == {"reasons": ["a", "b"], "notified": False}
