"""Pure parts of the ClickHouse adapter: statements, migration files, Arrow rows, batching."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from llmops.clickhouse.client import (
    MIGRATIONS_DIR,
    BatchBuffer,
    MigrationError,
    database_of,
    load_migrations,
    login_for,
    rows_to_arrow,
    split_statements,
    with_database,
)
from llmops.clickhouse.credentials import load_or_create_credentials
from llmops.config import Settings


def test_split_on_semicolons_outside_literals_and_comments() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE a (x String DEFAULT ';') ENGINE = Memory;
    /* block; comment */
    CREATE TABLE `b;c` (y String COMMENT 'it\\'s; fine') ENGINE = Memory ;
    ;
    -- trailing comment only
    """
    assert split_statements(sql) == [
        "CREATE TABLE a (x String DEFAULT ';') ENGINE = Memory",
        "CREATE TABLE `b;c` (y String COMMENT 'it\\'s; fine') ENGINE = Memory",
    ]


def test_comments_are_removed_but_tokens_stay_apart() -> None:
    assert split_statements("SELECT 1--x\nAS y") == ["SELECT 1\nAS y"]
    assert split_statements("SELECT/**/1") == ["SELECT 1"]
    assert split_statements("-- nothing\n") == []


@pytest.mark.parametrize("sql", ["SELECT 'open", "SELECT 1 /* open"])
def test_unterminated_tokens_are_errors(sql: str) -> None:
    with pytest.raises(ValueError):
        split_statements(sql)


def test_repository_migrations_are_numbered_and_split() -> None:
    migrations = load_migrations(MIGRATIONS_DIR)
    names = [m.name for m in migrations]
    assert names[:4] == [
        "002_requests.sql",
        "003_responses.sql",
        "004_metric_windows.sql",
        "005_dead_letters.sql",
    ]
    assert [m.number for m in migrations] == sorted(m.number for m in migrations)
    for migration in migrations:
        statements = split_statements(migration.sql)
        assert statements, migration.name
        assert all("--" not in s for s in statements)
        # portable DDL: nothing cluster- or Kafka-specific on the embedded engine
        text = migration.sql.upper()
        assert "ON CLUSTER" not in text and "REPLICATED" not in text and "KAFKA" not in text


def test_migration_file_rules(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "010_b.sql").write_text("SELECT 2;")
    (tmp_path / "002_c.sql").write_text("SELECT 3;")
    assert [m.name for m in load_migrations(tmp_path)] == ["001_a.sql", "002_c.sql", "010_b.sql"]
    first = load_migrations(tmp_path)[0]
    (tmp_path / "001_a.sql").write_text("SELECT 1; ")
    assert load_migrations(tmp_path)[0].checksum != first.checksum
    (tmp_path / "02_dup.sql").write_text("SELECT 4;")
    with pytest.raises(MigrationError, match="share number 2"):
        load_migrations(tmp_path)


def test_badly_named_migration_file(tmp_path: Path) -> None:
    (tmp_path / "requests.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNN_what\.sql"):
        load_migrations(tmp_path)


def test_database_in_url() -> None:
    url = "http://u:p%40ss@127.0.0.1:18123/llmops?x=1"
    assert database_of(url) == "llmops"
    assert database_of("http://h:1") == ""
    assert with_database(url, "default") == "http://u:p%40ss@127.0.0.1:18123/default?x=1"


def test_rows_to_arrow_types() -> None:
    ts = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    rows = [
        {
            "id": "a",
            "ts": ts,
            "n": 1,
            "f": 0.5,
            "ok": True,
            "attrs": {"k": "v"},
            "counts": {"stop": 2},
            "maybe": None,
            "unused": 0,
        },
        {
            "id": "b",
            "ts": ts,
            "n": 2,
            "f": 1.0,
            "ok": False,
            "attrs": {},
            "counts": {},
            "maybe": None,
            "unused": 0,
        },
    ]
    table = rows_to_arrow(rows, ["id", "ts", "n", "f", "ok", "attrs", "counts", "maybe"])
    assert table.column_names == ["id", "ts", "n", "f", "ok", "attrs", "counts"]  # all-None out
    schema = table.schema
    assert schema.field("id").type == pa.string()
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("n").type == pa.int64()
    assert schema.field("ok").type == pa.bool_()
    assert schema.field("attrs").type == pa.map_(pa.string(), pa.string())
    assert schema.field("counts").type == pa.map_(pa.string(), pa.int64())
    assert table.column("counts").to_pylist() == [[("stop", 2)], []]
    assert table.num_rows == 2


def test_rows_to_arrow_needs_every_column() -> None:
    with pytest.raises(KeyError):
        rows_to_arrow([{"a": 1}], ["a", "b"])


def test_batch_buffer_is_due_by_size() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(max_rows=3, max_age_s=10)
    assert not buffer.due(0) and buffer.wait_s(0) is None
    buffer.add(1, now=0)
    buffer.add(2, now=1)
    assert not buffer.due(1)
    buffer.add(3, now=2)
    assert buffer.due(2)
    assert buffer.drain() == [1, 2, 3]
    assert len(buffer) == 0 and not buffer.due(100)


def test_batch_buffer_is_due_by_age_of_the_oldest() -> None:
    buffer: BatchBuffer[str] = BatchBuffer(max_rows=100, max_age_s=1.0)
    buffer.add("a", now=10.0)
    buffer.add("b", now=10.9)
    assert buffer.wait_s(10.5) == pytest.approx(0.5)
    assert not buffer.due(10.99)
    assert buffer.due(11.0)
    assert buffer.drain() == ["a", "b"]
    buffer.add("c", now=20.0)  # the age restarts with the first row after a drain
    assert not buffer.due(20.5)
    assert buffer.wait_s(25.0) == 0.0


@pytest.mark.parametrize(("rows", "age"), [(0, 1.0), (1, 0.0)])
def test_batch_buffer_bounds(rows: int, age: float) -> None:
    with pytest.raises(ValueError):
        BatchBuffer(max_rows=rows, max_age_s=age)


def test_login_for_comes_from_the_settings_it_is_given(tmp_path: Path) -> None:
    embedded = "http://127.0.0.1:18123/llmops"
    settings = Settings(data_dir=tmp_path, store_port=18123, clickhouse_user=None)
    settings = settings.model_copy(update={"clickhouse_password": None, "store_password": None})
    assert login_for(embedded, settings) is None  # no store has started on this data dir
    made = load_or_create_credentials(tmp_path)
    assert login_for(embedded, settings) == (made.service_user, made.service_password)
    assert login_for("http://u:p@127.0.0.1:18123/llmops", settings) is None  # the URL's own
    assert login_for("http://127.0.0.1:9999/llmops", settings) is None  # not the store's port
    assert login_for("https://ch.example:18123/llmops", settings) is None  # not loopback
    chosen = settings.model_copy(update={"store_password": "set"})
    assert login_for(embedded, chosen) == (made.service_user, "set")
    named = settings.model_copy(update={"clickhouse_user": "reader", "clickhouse_password": "pw"})
    assert login_for("https://ch.example:8443/llmops", named) == ("reader", "pw")
