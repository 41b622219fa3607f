"""Migrations on the real engine: once each, in order, and never silently changed."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from llmops.clickhouse import client as store
from streams import rows as stream_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def client(store_url: str) -> Client:
    return store.ensure_database(f"{store_url}/m_{uuid.uuid4().hex[:12]}")


def test_ensure_database_refuses_default(store_url: str) -> None:
    for url in (f"{store_url}/default", store_url):
        with pytest.raises(ValueError, match="database of our own"):
            store.ensure_database(url)


def test_ensure_database_is_idempotent(store_url: str) -> None:
    url = f"{store_url}/m_{uuid.uuid4().hex[:12]}"
    first = store.ensure_database(url)
    second = store.ensure_database(url)
    assert first.command("SELECT currentDatabase()") == store.database_of(url)
    assert second.command("SELECT 1") == 1


def test_apply_twice_applies_once(client: Client) -> None:
    expected = [m.name for m in store.load_migrations()]
    assert store.apply_migrations(client) == expected
    assert store.apply_migrations(client) == []
    recorded = client.query("SELECT name FROM schema_migrations FINAL ORDER BY name")
    assert [r[0] for r in recorded.result_rows] == expected
    tables = set(client.query("SHOW TABLES").result_columns[0])
    assert {"requests", "responses", "metric_windows", "dead_letters"} <= tables


def test_changed_migration_is_an_error_and_new_ones_apply(client: Client, tmp_path: Path) -> None:
    for path in store.MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    store.apply_migrations(client, tmp_path)
    (tmp_path / "900_extra.sql").write_text(
        "CREATE TABLE IF NOT EXISTS extra (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
        "-- a second statement in the same file\n"
        "INSERT INTO extra VALUES (1);"
    )
    assert store.apply_migrations(client, tmp_path) == ["900_extra.sql"]
    assert client.command("SELECT count() FROM extra") == 1
    requests_sql = tmp_path / "002_requests.sql"
    requests_sql.write_text(requests_sql.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(store.MigrationError, match=r"002_requests\.sql changed"):
        store.apply_migrations(client, tmp_path)


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("requests", stream_rows.REQUEST_COLUMNS),
        ("responses", stream_rows.RESPONSE_COLUMNS),
        ("metric_windows", stream_rows.METRIC_WINDOW_COLUMNS),
        ("dead_letters", stream_rows.DEAD_LETTER_COLUMNS),
    ],
)
def test_tables_hold_every_column_the_streams_sink_writes(
    client: Client, table: str, columns: tuple[str, ...]
) -> None:
    store.apply_migrations(client)
    described = {row[0] for row in client.query(f"DESCRIBE TABLE {table}").result_rows}
    assert set(columns) <= described, set(columns) - described
    assert "inserted_at" in described
