"""Batching, publishing and acking, shared by every agent of the worker.

faust commits, per partition, the offset below the first message no stream has acknowledged
yet. Agents iterate `noack_take`, which never acks by itself, and ack each event explicitly
once everything it produced is stored and acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import cast

import faust
from faust.types import EventT, StreamT

from llmops.telemetry import metrics
from streams import SERVICE
from streams.records import Outgoing, record_size
from streams.sink import Backoff

log = logging.getLogger(__name__)


class Delivery:
    """How agents take batches from their streams, publish records and ack events."""

    def __init__(self, app: faust.App, batch_size: int, flush_s: float) -> None:
        self.app = app
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.backoff = Backoff()

    def batches(self, stream: StreamT[bytes]) -> AsyncIterator[Sequence[EventT[bytes]]]:
        # noack_take yields the buffered events themselves and leaves every ack to us
        # (`take()` acks a batch in a `finally` block, even when the body failed).
        # (typed as yielding values: it yields events since faust-streaming 0.10)
        concrete = cast("faust.Stream[bytes]", stream)
        return cast(
            "AsyncIterator[Sequence[EventT[bytes]]]",
            concrete.noack_take(self.batch_size, within=self.flush_s),
        )

    async def publish(self, outgoing: Sequence[Outgoing]) -> None:
        """Send every record and wait for the broker's acks; on failure send them all again
        (duplicates are absorbed downstream: every record carries its ids). A record larger
        than the producer sends is dropped first, logged and counted: retrying it could
        never succeed and would stop the agent for good."""
        outgoing = self._sendable(outgoing)
        attempt = 0
        while outgoing:
            try:
                # faust's producer itself: Topic.send adds per-record bookkeeping that costs
                # more than the send (measured: 500 records ~200 ms against ~40 ms).
                producer = self.app.producer
                futures = [
                    await producer.send(out.topic, out.key, out.value, None, None, out.headers)
                    for out in outgoing
                ]
                await asyncio.gather(*futures)
            except Exception as error:
                attempt += 1
                delay = self.backoff.delay(attempt, random.random())
                log.warning(
                    "publishing %d records failed (attempt %d, retry in %.1fs): %s",
                    len(outgoing),
                    attempt,
                    delay,
                    error,
                )
                await asyncio.sleep(delay)
            else:
                for topic, count in Counter(out.topic for out in outgoing).items():
                    metrics.count_produced(SERVICE, topic, count)
                return

    def _sendable(self, outgoing: Sequence[Outgoing]) -> Sequence[Outgoing]:
        limit = int(self.app.conf.producer_max_request_size)
        kept = [out for out in outgoing if record_size(out) <= limit]
        if len(kept) == len(outgoing):
            return outgoing
        for out in outgoing:
            if record_size(out) > limit:
                metrics.count_skipped(SERVICE, out.topic, "too_large")
                log.error(
                    "dropped a %d-byte record for %s: larger than the producer sends (%d)",
                    record_size(out),
                    out.topic,
                    limit,
                )
        return kept

    @staticmethod
    async def ack(stream: StreamT[bytes], events: Iterable[EventT[bytes]]) -> None:
        for event in events:
            await stream.ack(event)
