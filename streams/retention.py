"""How long the tables that hold text keep a row (Settings.retention_days), as ClickHouse TTLs.

Counted from `inserted_at` (when the row was stored, filled by ClickHouse), not from `ts`
(chosen by the producer): ClickHouse drops rows whose TTL has passed as they are merged, so a
ts-based TTL would discard a record with an old ts at once and keep one dated 2299 forever.

A migration cannot carry a setting (migrations are fixed files, checksummed once applied):
008_text_retention.sql gives every database the default, and the metrics worker sets the
configured value at start. It alters a table only when its TTL differs, so a restart with
the same setting costs one query (MODIFY TTL rewrites the table's parts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.driver.binding import quote_identifier

from streams import rows

# Where user or model text is stored (streams/privacy.py); metric_windows holds none.
# judgements (migration 013) holds what judge models wrote, filled from responses' rows.
TEXT_TABLES: tuple[str, ...] = (
    rows.REQUESTS_TABLE,
    rows.RESPONSES_TABLE,
    rows.DEAD_LETTERS_TABLE,
    "judgements",
)

# system.tables.engine_full: "... ORDER BY x TTL inserted_at + toIntervalDay(30) SETTINGS ..."
_TTL = re.compile(r"\bTTL\s+(.+?)\s*(?:\bSETTINGS\b|$)")


def ttl_expression(days: int) -> str | None:
    """The TTL a table should have, as ClickHouse writes it back; None: no TTL."""
    if days < 0:
        raise ValueError(f"retention days must be 0 (forever) or more, got {days}")
    return f"inserted_at + toIntervalDay({days})" if days else None


def current_ttl(engine_full: str) -> str | None:
    match = _TTL.search(engine_full)
    return match.group(1) if match else None


def retention_statements(engine_full: Mapping[str, str], days: int) -> list[str]:
    """The ALTERs that bring each table's TTL to `days` (none for a table already there)."""
    wanted = ttl_expression(days)
    statements = []
    for table, engine in sorted(engine_full.items()):
        have = current_ttl(engine)
        if have == wanted:
            continue
        name = quote_identifier(table)
        if wanted is None:
            statements.append(f"ALTER TABLE {name} REMOVE TTL")
        else:
            statements.append(f"ALTER TABLE {name} MODIFY TTL inserted_at + INTERVAL {days} DAY")
    return statements


def apply_retention(client: Any, days: int, tables: Sequence[str] = TEXT_TABLES) -> list[str]:
    """Set the TTL of `tables` (which must exist) in the client's database; returns the
    statements run. A missing table is an error, so the caller retries after migrations."""
    result = client.query(
        "SELECT name, engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name IN {tables:Array(String)}",
        parameters={"tables": list(tables)},
    )
    engines = {str(name): str(engine) for name, engine in result.result_rows}
    missing = sorted(set(tables) - engines.keys())
    if missing:
        raise LookupError(f"tables {missing} do not exist yet (migrations not applied?)")
    statements = retention_statements(engines, days)
    for statement in statements:
        client.command(statement)
    return statements
