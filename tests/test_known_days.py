"""The calendar of known days: parsing, alert suppression, exclusion from training."""

from __future__ import annotations

import datetime as dt

import pytest

from conftest import FIRST_DAY, LAST_DAY, settings_in, smtp_env
from volume_monitor import jobs
from volume_monitor.errors import ConfigError
from volume_monitor.known_days import read_calendar

HEADER = "date,label,suppress_alert,exclude_from_training\n"


def write_calendar(folder, body: str):
    path = folder / "calendar.csv"
    path.write_text(HEADER + body)
    return path


def test_calendar_rows_are_read_by_date(tmp_path):
    path = write_calendar(tmp_path, "2026-12-25,Christmas,true,true\n2026-03-02,,false,yes\n")
    calendar = read_calendar(path)
    christmas = calendar[dt.date(2026, 12, 25)]
    assert christmas.label == "Christmas" and christmas.suppress_alert
    second = calendar[dt.date(2026, 3, 2)]
    assert second.label == "known day" and not second.suppress_alert
    assert second.exclude_from_training
    assert read_calendar(None) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("25/12/2026,Christmas,true,true\n", "line 2: '25/12/2026' is not a date"),
        ("2026-12-25,Christmas,maybe,true\n", "line 2: 'maybe' is not true or false"),
    ],
)
def test_bad_calendar_rows_are_config_errors_naming_the_line(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        read_calendar(write_calendar(tmp_path, body))


def test_calendar_missing_a_column_or_file_is_a_config_error(tmp_path):
    path = tmp_path / "calendar.csv"
    path.write_text("date,label\n2026-12-25,Christmas\n")
    with pytest.raises(ConfigError, match="missing the column"):
        read_calendar(path)
    with pytest.raises(ConfigError, match="cannot read VM_CALENDAR"):
        read_calendar(tmp_path / "absent.csv")


def test_a_calendar_saved_by_excel_with_a_bom_is_read(tmp_path):
    path = tmp_path / "calendar.csv"
    path.write_bytes(("\ufeff" + HEADER + "2026-12-25,Christmas,true,true\n").encode("utf-8"))
    assert read_calendar(path)[dt.date(2026, 12, 25)].label == "Christmas"


def test_a_calendar_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "calendar.csv"
    path.write_bytes((HEADER + "2026-12-25,Fête,true,true\n").encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        read_calendar(path)
    assert str(caught.value).startswith("VM_CALENDAR calendar.csv is not UTF-8 text (byte ")


def test_suppressed_day_is_scored_annotated_and_not_emailed(trained_settings, smtp_server):
    port, inbox = smtp_server
    calendar = write_calendar(
        trained_settings().results_dir.parent, f"{LAST_DAY},Maintenance,true,false\n"
    )
    settings = trained_settings(VM_CALENDAR=str(calendar), **smtp_env(port))

    result = jobs.score_day(settings, LAST_DAY)

    assert inbox.messages == []
    assert result.summary.known_day == "Maintenance"
    assert result.summary.alert is False and result.summary.anomalies > 0
    assert result.summary.reasons[-1] == "alert suppressed: known day 'Maintenance'"


def test_annotated_day_still_alerts(trained_settings, smtp_server):
    port, inbox = smtp_server
    calendar = write_calendar(
        trained_settings().results_dir.parent, f"{LAST_DAY},Sale,false,false\n"
    )
    result = jobs.score_day(trained_settings(VM_CALENDAR=str(calendar), **smtp_env(port)), LAST_DAY)
    assert result.summary.known_day == "Sale" and result.summary.alert is True
    assert len(inbox.messages) == 1


def test_excluded_days_are_left_out_of_training(tmp_path, demo_sqlite):
    excluded = [LAST_DAY - dt.timedelta(days=n) for n in (1, 2, 3)]
    calendar = write_calendar(tmp_path, "".join(f"{d},incident,false,true\n" for d in excluded))
    url = f"sqlite:///{demo_sqlite}"
    plain = jobs.train(settings_in(tmp_path / "a", VM_DATABASE_URL=url), FIRST_DAY, LAST_DAY)
    without = jobs.train(
        settings_in(tmp_path / "b", VM_DATABASE_URL=url, VM_CALENDAR=str(calendar)),
        FIRST_DAY, LAST_DAY,
    )  # fmt: skip
    assert plain.days - without.days == 3
