"""Group commit for spans: requests wait until their spans are written, writes are batched.

A request is answered only after its spans are in ClickHouse, so an exporter retries what a
failed insert lost (the table is keyed by span id, a retry is not doubled). Spans from
concurrent requests share one insert: a batch is written when it holds `max_spans` spans or
its oldest span has waited `max_delay_s`, whichever comes first. One insert runs at a time;
spans arriving meanwhile form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llmops.local.otlp_receiver.otlp import Row

WriteRows = Callable[[list[Row]], None]

# Defaults: ClickHouse prefers few large inserts (each costs ~30-40 ms through the embedded
# store, whatever its size), exporters prefer quick answers. bench/traces.py measured 100 ms
# of linger beating 0 and 20 ms: requests reach the batcher staggered by their decoding, and
# a short linger splits them into more, smaller inserts. An exporter's batch waits <= 100 ms.
DEFAULT_MAX_SPANS = 5000
DEFAULT_FLUSH_MS = 100.0
DEFAULT_MAX_WAITING_SPANS = 200_000


class Overloaded(Exception):
    """More spans are waiting than the configured bound: the sender should back off."""


@dataclass
class _Pending:
    rows: list[Row]
    done: asyncio.Future[None]
    since: float = field(default_factory=time.monotonic)


def _mark_retrieved(future: asyncio.Future[None]) -> None:
    # A sender that hung up never awaits its future; reading the outcome here keeps asyncio
    # from logging "exception was never retrieved" for it.
    if not future.cancelled():
        future.exception()


class SpanBatcher:
    def __init__(
        self,
        write: WriteRows,
        max_spans: int = DEFAULT_MAX_SPANS,
        max_delay_s: float = DEFAULT_FLUSH_MS / 1000,
        max_waiting_spans: int = DEFAULT_MAX_WAITING_SPANS,
    ) -> None:
        if max_spans < 1 or max_delay_s < 0 or max_waiting_spans < max_spans:
            raise ValueError("need max_spans >= 1, max_delay_s >= 0, max_waiting >= max_spans")
        self._write = write
        self.max_spans = max_spans
        self.max_delay_s = max_delay_s
        self.max_waiting_spans = max_waiting_spans
        self._queue: list[_Pending] = []
        self._waiting = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.spans_written = 0
        self.inserts = 0

    @property
    def waiting_spans(self) -> int:
        return self._waiting

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="span-batcher")

    async def submit(self, rows: Sequence[Row]) -> None:
        """Wait until `rows` are written; raise what the insert raised, or Overloaded."""
        if not rows:
            return
        if self._closing:
            raise Overloaded("the receiver is shutting down")
        if self._waiting + len(rows) > self.max_waiting_spans and self._waiting > 0:
            raise Overloaded(f"{self._waiting} spans already wait to be written")
        pending = _Pending(list(rows), asyncio.get_running_loop().create_future())
        pending.done.add_done_callback(_mark_retrieved)
        self._queue.append(pending)
        self._waiting += len(pending.rows)
        self._wake.set()
        await asyncio.shield(pending.done)  # a client hanging up does not cancel the write

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _take_batch(self) -> list[_Pending]:
        # Whole requests only, so one request's outcome is one insert's outcome.
        batch: list[_Pending] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].rows) <= self.max_spans):
            item = self._queue.pop(0)
            batch.append(item)
            count += len(item.rows)
        self._waiting -= count
        return batch

    async def _wait_for_batch(self) -> None:
        while not self._queue:
            if self._closing:
                return
            self._wake.clear()
            await self._wake.wait()
        deadline = self._queue[0].since + self.max_delay_s
        while self._waiting < self.max_spans and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _run(self) -> None:
        while True:
            await self._wait_for_batch()
            if not self._queue:
                return  # closing and drained
            batch = self._take_batch()
            rows = [row for item in batch for row in item.rows]
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception as error:  # every waiter learns; the loop goes on
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(error)
                continue
            self.inserts += 1
            self.spans_written += len(rows)
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)
