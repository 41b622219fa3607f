"""The consumer loop on the real broker: backpressure at `max_in_flight`."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import ConsumerConfig, ConsumerLoop
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from llmops.kafka.topics import ensure_topics
from schemas.topics import TopicSpec
from tests.integration.router.test_pools import eventually

pytestmark = pytest.mark.integration


async def test_a_full_loop_fetches_again_only_once_resumed(bootstrap: str) -> None:
    """At capacity the loop pauses its partitions; when a slot frees it resumes before it
    fetches again (a fetch on paused partitions returns nothing and idles to its timeout)."""
    topic = f"bus-test-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(ensure_topics, bootstrap, [TopicSpec(topic, 1, "none", "test", ())])
    gates: list[asyncio.Future[None]] = []
    offsets: list[int] = []

    async def handler(record: Record) -> asyncio.Future[None]:
        offsets.append(record.offset)
        gates.append(asyncio.get_running_loop().create_future())
        return gates[-1]

    async with Producer(BusConfig(bootstrap)) as producer:
        loop = ConsumerLoop(
            BusConfig(bootstrap),
            ConsumerConfig(topics=[topic], group_id=topic, service="t", max_in_flight=1),
            handler,
            producer,
        )
        fetches_while_paused_with_room: list[int] = []
        fetch = loop.consumer.getmany

        async def watched_fetch(*args: Any, **kwargs: Any) -> Any:
            if loop.consumer.paused() and loop.in_flight < loop.config.max_in_flight:
                fetches_while_paused_with_room.append(loop.in_flight)
            return await fetch(*args, **kwargs)

        loop.consumer.getmany = watched_fetch  # type: ignore[method-assign]
        running = asyncio.create_task(loop.run())
        for _ in range(3):
            await (await producer.send(topic, b"{}"))
        for n in range(1, 4):
            await eventually(lambda n=n: len(gates) == n, 30, f"record {n}")  # type: ignore[misc]
            await eventually(lambda: bool(loop.consumer.paused()), 30, "the pause at capacity")
            assert loop.in_flight == 1
            gates[-1].set_result(None)
        await eventually(lambda: loop.records_done == 3, 30, "all records done")
        loop.stop()
        await running
    assert offsets == [0, 1, 2]
    assert fetches_while_paused_with_room == []
