"""Group commit: requests wait for their spans to be written; writes are batched."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llmops.local.otlp_receiver.batcher import Overloaded, SpanBatcher
from llmops.local.otlp_receiver.otlp import Row


class Recorder:
    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[Row]] = []
        self.fail = fail
        self.release = threading.Event()
        self.release.set()

    def __call__(self, rows: list[Row]) -> None:
        self.release.wait(10)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("store down")
        self.batches.append(rows)


def rows(n: int, tag: str = "r") -> list[Row]:
    return [(f"{tag}{i}",) for i in range(n)]


async def test_a_full_batch_is_written_at_once() -> None:
    sink = Recorder()
    batcher = SpanBatcher(sink, max_spans=4, max_delay_s=30)
    batcher.start()
    await asyncio.wait_for(
        asyncio.gather(batcher.submit(rows(2, "a")), batcher.submit(rows(2, "b"))), 10
    )
    assert sink.batches == [rows(2, "a") + rows(2, "b")]
    await batcher.close()
    assert (batcher.inserts, batcher.spans_written) == (1, 4)


async def test_a_partial_batch_is_written_after_the_delay() -> None:
    sink = Recorder()
    batcher = SpanBatcher(sink, max_spans=1000, max_delay_s=0.01)
    batcher.start()
    await asyncio.wait_for(batcher.submit(rows(3)), 10)
    assert sink.batches == [rows(3)]
    await batcher.close()


async def test_requests_are_not_split_across_inserts() -> None:
    sink = Recorder()
    sink.release.clear()  # hold the first insert so the others queue up behind it
    batcher = SpanBatcher(sink, max_spans=5, max_delay_s=0)
    batcher.start()
    first = asyncio.create_task(batcher.submit(rows(1, "x")))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(batcher.submit(rows(3, t))) for t in "abc"]
    await asyncio.sleep(0.05)
    sink.release.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 10)
    assert [len(b) for b in sink.batches] == [1, 3, 3, 3]
    await batcher.close()


async def test_a_failed_insert_fails_its_requests_only() -> None:
    sink = Recorder(fail=1)
    batcher = SpanBatcher(sink, max_spans=2, max_delay_s=0)
    batcher.start()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(batcher.submit(rows(2, "a")), 10)
    await asyncio.wait_for(batcher.submit(rows(2, "b")), 10)
    assert sink.batches == [rows(2, "b")]
    await batcher.close()


async def test_too_many_waiting_spans_is_overload() -> None:
    sink = Recorder()
    sink.release.clear()
    batcher = SpanBatcher(sink, max_spans=2, max_delay_s=0, max_waiting_spans=4)
    batcher.start()
    held = asyncio.create_task(batcher.submit(rows(2, "h")))  # being written, held
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(batcher.submit(rows(4, "q")))  # waits: exactly the bound
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded):
        await batcher.submit(rows(1, "x"))
    sink.release.set()
    await asyncio.wait_for(asyncio.gather(held, queued), 10)
    await batcher.close()


async def test_close_writes_what_is_queued_then_refuses() -> None:
    sink = Recorder()
    batcher = SpanBatcher(sink, max_spans=100, max_delay_s=60)
    batcher.start()
    pending = asyncio.create_task(batcher.submit(rows(3)))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(batcher.close(), 10)
    await asyncio.wait_for(pending, 10)
    assert sink.batches == [rows(3)]
    with pytest.raises(Overloaded):
        await batcher.submit(rows(1))


async def test_empty_submit_returns_at_once() -> None:
    batcher = SpanBatcher(Recorder())
    await batcher.submit([])  # not started: would hang if it waited for a write


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        SpanBatcher(Recorder(), max_spans=0)
    with pytest.raises(ValueError):
        SpanBatcher(Recorder(), max_spans=10, max_waiting_spans=5)
