"""Unmodified clickhouse-connect against the store service (real chDB behind real HTTP)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from llmops.clickhouse import client as store

pytestmark = pytest.mark.integration

TABLE_DDL = """
CREATE TABLE events
(
    id UInt64,
    name LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    score Float64,
    tags Map(LowCardinality(String), String),
    maybe Nullable(UInt32)
)
ENGINE = ReplacingMergeTree
ORDER BY id
"""
COLUMNS = ["id", "name", "ts", "score", "tags", "maybe"]
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db_url(store_url: str) -> str:
    return f"{store_url}/t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(db_url: str) -> Iterator[Client]:
    client = store.ensure_database(db_url)
    client.command(TABLE_DDL)
    yield client
    client.close()


def _rows(n: int, start: int = 0) -> list[list[Any]]:
    return [
        [i, f"n{i % 3}", T0 + dt.timedelta(seconds=i), i / 4, {"k": str(i)}, None if i % 2 else i]
        for i in range(start, start + n)
    ]


def test_native_insert_and_query_round_trip(client: Client) -> None:
    rows = _rows(500)
    summary = client.insert("events", rows, column_names=COLUMNS)
    assert summary.written_rows == 500
    result = client.query("SELECT * FROM events ORDER BY id")
    got = [list(r) for r in result.result_rows]
    # timestamps come back in the column's zone; compare as UTC instants
    assert [[r[0], r[1], r[2].replace(tzinfo=dt.UTC), *r[3:]] for r in got] == rows
    assert result.column_names == tuple(COLUMNS)


def test_arrow_insert_and_query(client: Client) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.uint64()),
            "name": ["a", "b", "a"],
            "ts": pa.array([T0, T0, T0], pa.timestamp("ms", tz="UTC")),
            "score": [0.5, 1.5, 2.5],
        }
    )
    client.insert_arrow("events", table)
    back = client.query_arrow("SELECT id, name, score, maybe FROM events ORDER BY id")
    assert back.column("id").to_pylist() == [1, 2, 3]
    assert back.column("name").to_pylist() == ["a", "b", "a"]
    assert back.column("score").to_pylist() == [0.5, 1.5, 2.5]
    assert back.column("maybe").to_pylist() == [None, None, None]  # the column default


def test_dataframe_insert_and_query(client: Client) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "id": [10, 11],
            "name": ["x", "y"],
            "ts": [T0, T0],
            "score": [1.0, 2.0],
            "tags": [{"a": "1"}, {}],
            "maybe": [None, 5],
        }
    )
    client.insert_df("events", frame)
    back = client.query_df("SELECT id, name, score, tags FROM events ORDER BY id")
    assert back["id"].tolist() == [10, 11]
    assert back["name"].tolist() == ["x", "y"]
    assert back["tags"].tolist() == [{"a": "1"}, {}]


def test_server_side_and_client_side_parameters(client: Client) -> None:
    client.insert("events", _rows(10), column_names=COLUMNS)
    tricky = "tab\there 'quote' \\ back ünï"
    result = client.query(
        "SELECT count(), {s:String} FROM events WHERE id >= {lo:UInt64} AND name = {name:String}",
        parameters={"lo": 3, "name": "n0", "s": tricky},
    )
    assert result.result_rows == [(3, tricky)]  # n0 is id % 3 == 0: ids 3, 6 and 9
    count = client.command("SELECT count() FROM events WHERE name = %(n)s", parameters={"n": "n1"})
    assert count == 3


def test_settings_hold_for_one_query_only(db_url: str) -> None:
    store.ensure_database(db_url).close()
    probe = "SELECT getSetting('max_block_size')"
    for sessions in (False, True):
        client = store.connect(db_url, autogenerate_session_id=sessions)
        before = client.command(probe)
        assert client.command(probe, settings={"max_block_size": 1234}) == 1234
        assert client.query(probe, settings={"max_block_size": 4321}).result_rows == [(4321,)]
        assert client.command(probe) == before
        client.close()


def test_a_session_keeps_set_and_temporary_tables(db_url: str) -> None:
    store.ensure_database(db_url).close()
    client = store.connect(db_url, autogenerate_session_id=True)
    other = store.connect(db_url, autogenerate_session_id=True)
    client.command("SET max_block_size = 777")
    client.command("CREATE TEMPORARY TABLE scratch (x UInt8)")
    client.command("INSERT INTO scratch VALUES (1), (2)")
    assert client.command("SELECT getSetting('max_block_size')") == 777
    assert client.command("SELECT count() FROM scratch") == 2
    assert other.command("SELECT getSetting('max_block_size')") != 777
    with pytest.raises(DatabaseError):
        other.command("SELECT count() FROM scratch")
    client.close()
    other.close()


@pytest.mark.parametrize("compress", [False, True, "lz4", "zstd", "gzip"])
def test_compression_both_ways(db_url: str, compress: bool | str) -> None:
    store.ensure_database(db_url).command(TABLE_DDL)
    client = store.connect(db_url, compress=compress)
    client.insert("events", _rows(20_000), column_names=COLUMNS)
    assert client.query("SELECT count(), sum(id) FROM events").result_rows == [
        (20_000, sum(range(20_000)))
    ]
    ids = client.query_arrow("SELECT id FROM events ORDER BY id").column("id").to_pylist()
    assert ids == list(range(20_000))
    client.close()


def test_errors_carry_clickhouse_codes(client: Client, store_url: str) -> None:
    with pytest.raises(DatabaseError) as unknown_table:
        client.query("SELECT * FROM no_such_table")
    assert unknown_table.value.code == 60
    with pytest.raises(DatabaseError) as syntax:
        client.query("SELEC 1")
    assert syntax.value.code == 62
    with pytest.raises(DatabaseError) as bad_value:
        client.query("SELECT {x:UInt8}", parameters={"x": "not a number"})
    assert bad_value.value.code is not None
    with pytest.raises(DatabaseError) as unknown_db:
        clickhouse_connect.get_client(dsn=f"{store_url}/no_such_db_{uuid.uuid4().hex[:6]}")
    assert unknown_db.value.code == 81
    # the client still works after errors
    assert client.command("SELECT 1") == 1


def test_bad_insert_data_is_rejected_whole(client: Client) -> None:
    with pytest.raises(DatabaseError) as info:
        client.raw_insert("events", ["id", "name"], "1\ta\nnot-a-number\tb\n", fmt="TSV")
    assert info.value.code == 27
    assert client.command("SELECT count() FROM events") == 0


def test_replayed_rows_count_once(client: Client) -> None:
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in _rows(100)]
    assert store.insert_rows(client, "events", rows, COLUMNS) == 100
    assert store.insert_rows(client, "events", rows[:60], COLUMNS) == 60  # a replay
    assert client.command("SELECT count() FROM events") == 160
    assert client.command("SELECT count() FROM events FINAL") == 100


def test_concurrent_clients(db_url: str, client: Client) -> None:
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            own = store.connect(db_url)
            for i in range(5):
                own.insert("events", _rows(50, offset + i * 50), column_names=COLUMNS)
                own.query("SELECT count() FROM events")
            own.close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t * 1000,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.command("SELECT count() FROM events") == 4 * 5 * 50
