"""The metrics worker's sink against the real ClickHouse engine: rows the store cannot hold
are found and returned, the rest stored; a store that is down is retried, never taken for
bad rows. Rows are built directly, past what the contracts allow, so this holds whatever
bounds the contracts carry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from llmops.clickhouse.client import connect
from llmops.local.procs import free_port
from schemas import DeadLetter, InferenceResult, Usage
from streams import rows
from streams.features import extract_features
from streams.sink import Backoff, TableWriter

pytestmark = pytest.mark.integration


def response_rows(n: int) -> list[rows.Row]:
    out = []
    for i in range(n):
        result = InferenceResult(
            request_id=f"r{i}",
            ts=datetime.now(UTC),
            text=f"text {i}",
            finish_reason="stop",
            usage=Usage(input_tokens=3, output_tokens=4),
        )
        out.append(rows.response_row(result, extract_features(result), payload_size=10))
    return out


def stored_ids(url: str, table: str, column: str) -> list[str]:
    client = connect(url)
    try:
        result = client.query(f"SELECT {column} FROM {table} FINAL ORDER BY {column}")
        return [str(row[0]) for row in result.result_rows]
    finally:
        client.close()


def test_rows_the_store_cannot_hold_are_returned_and_the_rest_stored(database: str) -> None:
    batch = response_rows(40)
    batch[7] = {**batch[7], "input_tokens": 2**70}  # past 64 bits: no column holds it
    batch[30] = {**batch[30], "text": "lone \ud800 surrogate"}  # not encodable as UTF-8
    writer = TableWriter(database, rows.RESPONSES_TABLE, rows.RESPONSE_COLUMNS)
    try:
        refused = asyncio.run(writer.write(batch))
    finally:
        writer.close()
    assert [(f.index, f.row["request_id"]) for f in refused] == [(7, "r7"), (30, "r30")]
    assert refused[0].reason.startswith("OverflowError")
    assert refused[1].reason.startswith("UnicodeEncodeError")
    assert (writer.rows_written, writer.rows_refused, writer.retries) == (38, 2, 0)
    expected = sorted(f"r{i}" for i in range(40) if i not in (7, 30))
    assert stored_ids(database, rows.RESPONSES_TABLE, "request_id") == expected


def test_a_dead_letter_past_the_offset_column_is_returned(database: str) -> None:
    def letter(offset: int) -> rows.Row:
        # model_construct: a value no contract bound has checked.
        return rows.dead_letter_row(
            DeadLetter.model_construct(
                event_id=uuid.uuid4().hex,
                ts=datetime.now(UTC),
                kind="not_json",
                reason="x",
                service="router",
                source_topic="llm.requests",
                source_partition=0,
                source_offset=offset,
                key_b64=None,
                payload_b64="",
                payload_size=0,
                headers={},
                request_id=None,
                reply_to=None,
            )
        )

    writer = TableWriter(database, rows.DEAD_LETTERS_TABLE, rows.DEAD_LETTER_COLUMNS)
    try:
        refused = asyncio.run(writer.write([letter(1), letter(2**70), letter(3)]))
    finally:
        writer.close()
    assert [f.index for f in refused] == [1]
    assert stored_ids(database, rows.DEAD_LETTERS_TABLE, "source_offset") == ["1", "3"]


def test_a_store_that_is_down_is_retried_not_taken_for_bad_rows() -> None:
    url = f"http://127.0.0.1:{free_port()}/llmops"  # nothing listens there
    writer = TableWriter(
        url, rows.RESPONSES_TABLE, rows.RESPONSE_COLUMNS, Backoff(initial_s=0.01, max_s=0.05)
    )

    async def attempt() -> bool:
        task = asyncio.create_task(writer.write(response_rows(5)))
        for _ in range(60_000):  # the test's own timeout ends it first
            if writer.retries >= 3 or task.done():
                break
            await asyncio.sleep(0.01)
        done = task.done()
        task.cancel()
        return done

    try:
        assert asyncio.run(attempt()) is False  # still retrying: nothing refused, nothing lost
    finally:
        writer.close()
    assert (writer.retries >= 3, writer.rows_refused, writer.rows_written) == (True, 0, 0)
