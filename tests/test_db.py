"""The database stage on real SQLite, PostgreSQL and MariaDB: bound windows, the query
contract, and clear errors."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.engine import make_url

from conftest import QUERY
from volume_monitor.db import (
    MISSING_LABEL,
    check_contract,
    fetch,
    fetch_chunks,
    make_engine,
    read_query,
)
from volume_monitor.errors import ConfigError, DatabaseError, QueryError

CONTRACT = ["date", "channelid", "actioncode", "user_agent", "count"]
WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15"
)
START, END = dt.date(2026, 3, 2), dt.date(2026, 3, 4)
EVENTS = [
    ("2026-03-01 23:59:59", "web", "view", WIN, 2),
    ("2026-03-02 00:00:00", "web", "view", WIN, 3),
    ("2026-03-02 12:30:00", "web", "view", MAC, 2),
    ("2026-03-02 23:59:59", None, "login", WIN, 1),
    ("2026-03-03 08:00:00", "api", "search", None, 4),
    ("2026-03-04 00:00:00", "web", "view", WIN, 5),
]
EXPECTED = {
    (dt.date(2026, 3, 2), "web", "view", WIN, 3),
    (dt.date(2026, 3, 2), "web", "view", MAC, 2),
    (dt.date(2026, 3, 2), MISSING_LABEL, "login", WIN, 1),
    (dt.date(2026, 3, 3), "api", "search", None, 4),
}


class Events:
    """A uniquely named events table in a real database, with the query file pointed at it."""

    def __init__(self, url: str, folder: Path):
        self.url = url
        self.folder = folder
        self.name = f"vm_test_events_{uuid.uuid4().hex[:10]}"
        self.metadata = MetaData()
        self.table = Table(
            self.name,
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("created_at", DateTime, nullable=False),
            Column("channelid", String(32)),
            Column("actioncode", String(32), nullable=False),
            Column("user_agent", String(512)),
        )
        self.setup_engine = create_engine(url)
        self.metadata.create_all(self.setup_engine)
        rows = [
            {
                "created_at": dt.datetime.fromisoformat(stamp),
                "channelid": channel,
                "actioncode": action,
                "user_agent": agent,
            }
            for stamp, channel, action, agent, times in EVENTS
            for _ in range(times)
        ]
        with self.setup_engine.begin() as connection:
            connection.execute(insert(self.table), rows)
        self.query_path = self.sql_file(
            "daily.sql", QUERY.read_text(encoding="utf-8").replace("activityhistory", self.name)
        )

    def sql_file(self, filename: str, sql: str) -> Path:
        path = self.folder / filename
        path.write_text(sql, encoding="utf-8")
        return path

    def count_between(self, start: dt.date, end: dt.date) -> int:
        """An independent ``COUNT(*)`` over ``[start, end)``."""
        low = dt.datetime.combine(start, dt.time())
        high = dt.datetime.combine(end, dt.time())
        column = self.table.c.created_at
        statement = select(func.count()).where(column >= low, column < high)
        with self.setup_engine.connect() as connection:
            return connection.execute(statement).scalar_one()

    def drop(self) -> None:
        self.metadata.drop_all(self.setup_engine)
        self.setup_engine.dispose()


@pytest.fixture
def events(any_database_url, tmp_path):
    table = Events(any_database_url, tmp_path)
    yield table
    table.drop()


def as_rows(frame: pd.DataFrame) -> set[tuple]:
    agent = "user_agent" if "user_agent" in frame.columns else "os_family"
    return {
        (
            row.date.date(),
            row.channelid,
            row.actioncode,
            None if pd.isna(getattr(row, agent)) else getattr(row, agent),
            row.count,
        )
        for row in frame.itertuples(index=False)
    }


def test_fetch_returns_the_contract_with_normalised_types(events):
    frame = fetch(make_engine(events.url), read_query(events.query_path), START, END)
    assert list(frame.columns) == CONTRACT
    assert pd.api.types.is_datetime64_dtype(frame["date"])
    assert frame["date"].dt.tz is None
    assert (frame["date"] == frame["date"].dt.normalize()).all()
    for column in ("channelid", "actioncode"):
        assert pd.api.types.is_string_dtype(frame[column])
        assert all(isinstance(value, str) for value in frame[column])
    assert frame["count"].dtype == "int64"
    assert as_rows(frame) == EXPECTED


def test_fetch_counts_equal_an_independent_count(events):
    engine, query = make_engine(events.url), read_query(events.query_path)
    for start, end in [(START, END), (dt.date(2026, 3, 1), dt.date(2026, 3, 5))]:
        frame = fetch(engine, query, start, end)
        assert int(frame["count"].sum()) == events.count_between(start, end)
        per_day = frame.groupby(frame["date"].dt.date)["count"].sum()
        for day, total in per_day.items():
            assert total == events.count_between(day, day + dt.timedelta(days=1))
    assert events.count_between(dt.date(2026, 3, 1), dt.date(2026, 3, 5)) == 17


def test_fetch_end_date_is_exclusive_and_start_inclusive(events):
    engine, query = make_engine(events.url), read_query(events.query_path)
    frame = fetch(engine, query, END, END + dt.timedelta(days=1))
    assert as_rows(frame) == {(END, "web", "view", WIN, 5)}
    frame = fetch(engine, query, START, END)
    assert END not in set(frame["date"].dt.date)
    assert frame.loc[frame["date"].dt.date == START, "count"].sum() == 6
    assert fetch(engine, query, START, START).empty


def test_fetch_accepts_os_family_instead_of_user_agent(events):
    path = events.sql_file(
        "families.sql",
        f"""
        SELECT DATE(created_at) AS date, channelid, actioncode, 'Windows' AS os_family,
               COUNT(*) AS count
        FROM {events.name}
        WHERE created_at >= :start AND created_at < :end
        GROUP BY DATE(created_at), channelid, actioncode
        """,
    )
    frame = fetch(make_engine(events.url), read_query(path), START, END)
    assert list(frame.columns) == ["date", "channelid", "actioncode", "os_family", "count"]
    assert as_rows(frame) == {
        (dt.date(2026, 3, 2), "web", "view", "Windows", 5),
        (dt.date(2026, 3, 2), MISSING_LABEL, "login", "Windows", 1),
        (dt.date(2026, 3, 3), "api", "search", "Windows", 4),
    }


def test_query_on_a_missing_table_is_a_query_error(events):
    path = events.sql_file(
        "missing_table.sql",
        "SELECT * FROM vm_no_such_table_here WHERE created_at >= :start AND created_at < :end",
    )
    with pytest.raises(QueryError) as caught:
        fetch(make_engine(events.url), read_query(path), START, END)
    assert "vm_no_such_table_here" in str(caught.value)


def test_query_missing_contract_columns_on_a_real_database(events):
    path = events.sql_file(
        "short.sql",
        f"SELECT DATE(created_at) AS date, COUNT(*) AS count FROM {events.name} "
        "WHERE created_at >= :start AND created_at < :end GROUP BY DATE(created_at)",
    )
    with pytest.raises(QueryError) as caught:
        fetch(make_engine(events.url), read_query(path), START, END)
    message = str(caught.value)
    assert "channelid" in message
    assert "actioncode" in message
    assert "user_agent" in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://postgres:s3cret@127.0.0.1:1/test",
        "mysql+pymysql://root:s3cret@127.0.0.1:1/test",
    ],
)
def test_unreachable_server_is_a_database_error_without_password(url):
    with pytest.raises(DatabaseError) as caught:
        fetch(make_engine(url), read_query(QUERY), START, END)
    message = str(caught.value)
    assert "s3cret" not in message
    assert "***" in message
    assert "127.0.0.1" in message


def test_make_engine_on_missing_sqlite_file(tmp_path):
    path = tmp_path / "nested" / "missing.db"
    with pytest.raises(DatabaseError) as caught:
        make_engine(f"sqlite:///{path}")
    assert str(path) in str(caught.value)
    assert not path.exists()
    assert not path.parent.exists()


def test_make_engine_on_unknown_dialect(tmp_path):
    with pytest.raises(ConfigError) as caught:
        make_engine("nosuchdialect://vm:s3cret@db.example.com/events")
    message = str(caught.value)
    assert "nosuchdialect" in message
    assert "s3cret" not in message


def test_read_query_binds_start_and_end():
    statement = read_query(QUERY)
    assert set(statement.compile().params) == {"start", "end"}


@pytest.mark.parametrize(
    ("sql", "missing"),
    [
        ("SELECT 1 WHERE d >= :start", ":end"),
        ("SELECT 1 WHERE d < :end", ":start"),
        ("SELECT 1 WHERE d >= :begin AND d < :finish", ":end, :start"),
        ("-- window :start to :end\nSELECT 1 WHERE d < :end", ":start"),
        ("   -- indented :start\nSELECT 1\nWHERE d < :end", ":start"),
    ],
)
def test_read_query_rejects_a_file_without_start_or_end(tmp_path, sql, missing):
    path = tmp_path / "query.sql"
    path.write_text(sql, encoding="utf-8")
    with pytest.raises(QueryError) as caught:
        read_query(path)
    assert f"(missing: {missing})" in str(caught.value)
    assert "query.sql" in str(caught.value)


def test_read_query_ignores_parameters_in_whole_line_comments(tmp_path):
    path = tmp_path / "query.sql"
    path.write_text(
        "-- :note and :other are documentation\nSELECT 1 WHERE d >= :start AND d < :end\n",
        encoding="utf-8",
    )
    assert set(read_query(path).compile().params) == {"start", "end"}


def test_read_query_on_a_missing_file_is_a_config_error(tmp_path):
    path = tmp_path / "nope.sql"
    with pytest.raises(ConfigError) as caught:
        read_query(path)
    assert str(path) in str(caught.value)


def contract_frame(**columns) -> pd.DataFrame:
    values = {
        "date": ["2026-03-02", "2026-03-03"],
        "channelid": ["web", "api"],
        "actioncode": ["view", "login"],
        "user_agent": [WIN, MAC],
        "count": [3, 4],
    }
    values.update(columns)
    return pd.DataFrame({k: v for k, v in values.items() if v is not None})


def test_check_contract_normalises_types():
    frame = contract_frame(
        date=[dt.datetime(2026, 3, 2, 13, 45), dt.date(2026, 3, 3)],
        channelid=[None, "api"],
        count=["3", 4.0],
    )
    checked = check_contract(frame)
    assert list(checked.columns) == CONTRACT
    assert list(checked["date"]) == [pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-03")]
    assert list(checked["channelid"]) == [MISSING_LABEL, "api"]
    assert checked["count"].dtype == "int64"
    assert list(checked["count"]) == [3, 4]


def test_check_contract_accepts_upper_case_columns():
    frame = contract_frame().rename(columns=str.upper)
    assert list(check_contract(frame).columns) == CONTRACT


def test_check_contract_names_each_missing_column():
    with pytest.raises(QueryError) as caught:
        check_contract(contract_frame(channelid=None, user_agent=None, count=None))
    message = str(caught.value)
    for name in ("channelid", "user_agent (or os_family)", "count"):
        assert name in message
    assert "missing the column(s) channelid, user_agent (or os_family), count" in message


@pytest.mark.parametrize(
    ("counts", "words"),
    [
        ([3, None], "NULL or non-numeric"),
        ([3, "many"], "NULL or non-numeric"),
        ([3, -1], "negative"),
    ],
)
def test_check_contract_rejects_bad_counts(counts, words):
    with pytest.raises(QueryError) as caught:
        check_contract(contract_frame(count=counts))
    assert "count" in str(caught.value)
    assert words in str(caught.value)
    assert "1 " in str(caught.value)


@pytest.mark.parametrize("dates", [["2026-03-02", "yesterday"], ["2026-03-02", None]])
def test_check_contract_rejects_non_dates(dates):
    with pytest.raises(QueryError, match="date has 1 value"):
        check_contract(contract_frame(date=dates))


def test_dates_are_converted_per_distinct_value_but_counted_per_row():
    def rows(dates):
        return pd.DataFrame(
            {"date": dates, "channelid": "web", "actioncode": "view", "user_agent": WIN,
             "count": 1}
        )  # fmt: skip

    with pytest.raises(QueryError, match="date has 3 value"):
        check_contract(rows(["2026-03-02", "nope", None, "2026-03-02 10:30", "nope"]))
    checked = check_contract(rows(["2026-03-02", "2026-03-03 23:59", "2026-03-02"] * 2))
    assert [str(d.date()) for d in checked["date"]] == [
        "2026-03-02",
        "2026-03-03",
        "2026-03-02",
    ] * 2


def test_check_contract_accepts_os_family_and_keeps_it():
    frame = contract_frame(user_agent=None, os_family=["Windows", "iOS"])
    checked = check_contract(frame)
    assert list(checked.columns) == ["date", "channelid", "actioncode", "os_family", "count"]
    assert list(checked["os_family"]) == ["Windows", "iOS"]


def test_integer_channel_ids_with_a_null_keep_their_label():
    rows = [(dt.date(2026, 3, 2), 1, "view", WIN, 3), (dt.date(2026, 3, 2), None, "view", WIN, 1)]
    checked = check_contract(pd.DataFrame(rows, columns=CONTRACT))
    assert list(checked["channelid"]) == ["1", MISSING_LABEL]


def test_check_contract_accepts_date_strings_of_mixed_precision():
    checked = check_contract(contract_frame(date=["2026-03-02", "2026-03-03 13:45:00"]))
    assert list(checked["date"]) == [pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-03")]


def test_rows_stream_in_bounded_chunks_that_add_up_to_the_whole(events):
    engine, query = make_engine(events.url), read_query(events.query_path)
    chunks = list(fetch_chunks(engine, query, START, END, rows=3))
    assert [len(c) for c in chunks] == [3] * (len(EXPECTED) // 3) + [len(EXPECTED) % 3] * (
        len(EXPECTED) % 3 > 0
    )
    assert all(list(c.columns) == CONTRACT for c in chunks)
    assert as_rows(pd.concat(chunks)) == EXPECTED
    [empty] = list(fetch_chunks(engine, query, dt.date(2030, 1, 1), dt.date(2030, 1, 2)))
    assert empty.empty and list(empty.columns) == CONTRACT


# --- the query file cannot write --------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    ["; DROP TABLE {table}", "; COMMIT; DROP TABLE {table}; COMMIT", ";\nDELETE FROM {table};"],
)
def test_a_query_file_of_several_statements_is_refused_before_it_runs(events, tail):
    before = events.count_between(START, END)
    sql = events.query_path.read_text(encoding="utf-8").rstrip().rstrip(";")
    path = events.sql_file("writes.sql", sql + tail.format(table=events.name))
    with pytest.raises(QueryError) as caught:
        read_query(path)
    assert str(caught.value).startswith(
        "the query writes.sql must hold exactly one statement, a SELECT; it holds "
    )
    assert events.count_between(START, END) == before > 0, "the table is intact"


def test_a_query_file_that_is_no_select_is_refused(events):
    path = events.sql_file("update.sql", f"UPDATE {events.name} SET channelid = :start "
                                         "WHERE created_at < :end")  # fmt: skip
    with pytest.raises(QueryError, match=r"the query update\.sql must be a SELECT, not UPDATE"):
        read_query(path)


def test_a_select_that_writes_fails_in_its_read_only_transaction(events):
    """A single SELECT calling a function that writes (here: a sequence) is stopped by the
    read-only session, on PostgreSQL and MariaDB; SQLite's query_only refuses any write."""
    dialect = make_url(events.url).get_backend_name()
    before = events.count_between(START, END)
    if dialect == "sqlite":
        engine = make_engine(events.url)
        with engine.connect() as connection, pytest.raises(Exception, match="readonly"):
            connection.exec_driver_sql(f"DELETE FROM {events.name}")
        engine.dispose()
        assert events.count_between(START, END) == before > 0
        return
    sequence = f"{events.name}_seq"
    with events.setup_engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE SEQUENCE {sequence}")
    call = f"nextval('{sequence}')" if dialect == "postgresql" else f"NEXTVAL({sequence})"
    sql = events.query_path.read_text(encoding="utf-8").replace(
        "COUNT(*) AS count", f"COUNT(*) + 0 * MAX({call}) AS count"
    )
    assert call in sql
    try:
        with pytest.raises(QueryError) as caught:
            fetch(make_engine(events.url), read_query(events.sql_file("seq.sql", sql)), START, END)
        assert "read-only" in str(caught.value).lower() or "read only" in str(caught.value).lower()
        with events.setup_engine.connect() as connection:
            following = connection.exec_driver_sql(
                f"SELECT nextval('{sequence}')" if dialect == "postgresql"
                else f"SELECT NEXTVAL({sequence})"
            ).scalar_one()  # fmt: skip
        assert following == 1, "the query's nextval never happened"
    finally:
        with events.setup_engine.begin() as connection:
            connection.exec_driver_sql(f"DROP SEQUENCE {sequence}")
