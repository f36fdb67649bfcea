"""Bulk writes of daily counts on PostgreSQL. Row-by-row executemany would take minutes for
a year of 20,000 series, and its row count covers only the last page of rows; so the rows are
copied into a temporary table (``COPY`` with psycopg2, executemany with another driver) and
moved into ``daily_counts`` by one ``INSERT ... SELECT``, whose row count is exact."""

from __future__ import annotations

import io
from collections.abc import Iterable

from sqlalchemy import Column, MetaData, Table, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from volume_monitor.state.frames import FLOAT_COLUMNS
from volume_monitor.state.schema import daily_counts

STAGING = Table(
    "vm_incoming_counts",
    MetaData(),
    *(Column(column.name, column.type) for column in daily_counts.columns),
)
NAMES = [column.name for column in daily_counts.columns]
NULL = "\\N"
ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NEVER_NULL = ("series_id", "date", "count")


def write(connection: Connection, batches: Iterable[dict[str, list]], insert: Insert) -> int:
    """Stage every batch (columns by name), then run ``insert`` from the staged rows; returns
    the rows it wrote. The temporary table lives until the transaction ends."""
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {STAGING.name} (LIKE {daily_counts.name}) ON COMMIT DROP"
    )
    stage = _copy if connection.dialect.driver == "psycopg2" else _executemany
    for columns in batches:
        stage(connection, columns)
    moved = insert.from_select(NAMES, select(*(STAGING.c[name] for name in NAMES)))
    return connection.execute(moved).rowcount


def _executemany(connection: Connection, columns: dict[str, list]) -> None:
    rows = [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    connection.execute(STAGING.insert(), rows)


def _copy(connection: Connection, columns: dict[str, list]) -> None:
    texts = [_texts(name, columns[name]) for name in NAMES]
    data = io.StringIO("".join(f"{line}\n" for line in map("\t".join, zip(*texts, strict=True))))
    cursor = connection.connection.dbapi_connection.cursor()  # in the store's transaction
    try:
        cursor.copy_expert(f"COPY {STAGING.name} ({', '.join(NAMES)}) FROM STDIN", data)
    finally:
        cursor.close()


def _texts(name: str, values: list) -> list[str]:
    """``values`` in COPY's text format: ``\\N`` for NULL, special characters escaped."""
    if name in NEVER_NULL:  # integers and dates
        return [str(value) for value in values]
    if name in FLOAT_COLUMNS:
        return [NULL if value is None else repr(value) for value in values]
    if name == "is_anomaly":
        return [NULL if value is None else ("t" if value else "f") for value in values]
    return [NULL if value is None else value.translate(ESCAPES) for value in values]
