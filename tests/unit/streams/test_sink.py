from __future__ import annotations

import asyncio

import pytest

from streams.sink import Backoff, TableWriter

FAST = Backoff(initial_s=0.001, max_s=0.001)


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.1, factor=2.0, max_s=1.0, jitter=0.0)
    assert [backoff.delay(n, 0.5) for n in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )


def test_backoff_jitter_stays_within_its_fraction() -> None:
    backoff = Backoff(initial_s=1.0, max_s=1.0, jitter=0.2)
    assert backoff.delay(1, 0.0) == pytest.approx(0.8)
    assert backoff.delay(1, 0.5) == pytest.approx(1.0)
    assert backoff.delay(1, 0.999999) == pytest.approx(1.2, abs=1e-5)


def test_backoff_survives_huge_attempt_numbers() -> None:
    assert Backoff(max_s=5.0, jitter=0.0).delay(10_000, 0.3) == 5.0


def test_backoff_counts_attempts_from_one() -> None:
    with pytest.raises(ValueError):
        Backoff().delay(0, 0.5)


async def test_a_store_that_cannot_be_reached_is_retried_never_blamed_on_the_rows() -> None:
    # A URL the client refuses raises ValueError, which from an insert would mean the rows:
    # opening the connection is the store's side, so the batch is retried, not dead-lettered.
    writer = TableWriter("clickhouse://nowhere/llmops", "responses", ["request_id"], FAST)
    task = asyncio.ensure_future(writer.write([{"request_id": "a"}, {"request_id": "b"}]))
    for _ in range(3000):  # the retries counter has no event to wait on: poll it, bounded
        if writer.retries >= 3 or task.done():
            break
        await asyncio.sleep(0.01)
    assert not task.done()  # still retrying: nothing returned as refused
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert writer.rows_refused == 0 and writer.retries >= 3
