"""Known days (holidays, maintenance, past incidents) from the CSV file named by
``VM_CALENDAR``: a known day is annotated in the results, can have its alert suppressed, and
can be left out of training so an incident does not widen what normal looks like.

File format, one row per day::

    date,label,suppress_alert,exclude_from_training
    2026-12-25,Christmas,true,true
    2026-03-02,load job ran twice,false,true
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from volume_monitor.errors import ConfigError

COLUMNS = ("date", "label", "suppress_alert", "exclude_from_training")
TRUE, FALSE = {"true", "yes", "1"}, {"false", "no", "0", ""}


@dataclass(frozen=True)
class KnownDay:
    date: dt.date
    label: str
    suppress_alert: bool
    exclude_from_training: bool


def read_calendar(path: Path | None) -> dict[dt.date, KnownDay]:
    """The known days of ``path`` by date (none when no calendar is configured)."""
    if path is None:
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel writes a BOM
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ConfigError(f"cannot read VM_CALENDAR {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"VM_CALENDAR {path.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    if rows and set(COLUMNS) - set(rows[0]):
        missing = ", ".join(sorted(set(COLUMNS) - set(rows[0])))
        raise ConfigError(f"VM_CALENDAR {path.name} is missing the column(s) {missing}")
    days = [_known_day(row, number, path) for number, row in enumerate(rows, start=2)]
    return {day.date: day for day in days}


def excluded_from_training(calendar: dict[dt.date, KnownDay]) -> set[dt.date]:
    return {day.date for day in calendar.values() if day.exclude_from_training}


def _known_day(row: dict[str, str], line: int, path: Path) -> KnownDay:
    where = f"VM_CALENDAR {path.name} line {line}"
    try:
        date = dt.date.fromisoformat((row["date"] or "").strip())
    except ValueError:
        raise ConfigError(f"{where}: {row['date']!r} is not a date (YYYY-MM-DD)") from None
    return KnownDay(
        date,
        (row["label"] or "").strip() or "known day",
        _flag(row["suppress_alert"], where),
        _flag(row["exclude_from_training"], where),
    )


def _flag(text: str | None, where: str) -> bool:
    word = (text or "").strip().lower()
    if word in TRUE | FALSE:
        return word in TRUE
    raise ConfigError(f"{where}: {text!r} is not true or false")
