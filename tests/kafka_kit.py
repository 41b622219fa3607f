"""Isolation on the shared test broker: where a router group starts in llm.requests."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from llmops.kafka.topics import ensure_topics
from schemas.topics import REQUESTS

# A router that left a moment ago may still be a member for Tansu; a commit from outside the
# group is refused until it is gone.
_GROUP_BUSY = (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)


async def start_at_the_end(bootstrap: str, group_id: str, timeout_s: float = 30) -> None:
    """Commit `group_id` at the end of llm.requests. Tests share one broker: a router starting
    from the beginning (a new group) or from a shared group's offsets would serve what earlier
    tests left there (requests the metrics worker's tests write directly, requests parked when
    a platform stopped) on this test's pools, skewing its counts. The end is read from fetch
    high watermarks: Tansu's ListOffsets LATEST is wrong for multi-record batches."""
    # At its catalogue size, as the platform makes it (a fetch from a missing topic never ends).
    await asyncio.to_thread(ensure_topics, bootstrap, [REQUESTS])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(REQUESTS.name, p) for p in range(REQUESTS.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async with asyncio.timeout(timeout_s):
            while not await _at_end(consumer, partitions):
                await consumer.getmany(timeout_ms=100, max_records=10_000)
            ends = {tp: await consumer.position(tp) for tp in partitions}
            while True:
                try:
                    await consumer.commit(ends)
                    return
                except _GROUP_BUSY:
                    await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True
