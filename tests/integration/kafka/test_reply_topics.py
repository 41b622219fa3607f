"""Reply topics (README, reply protocol): every reply goes to partition 0 keyed by request
id, so a client still gets all of them from a topic of several partitions (one auto-created
by a late reply, or made by hand); the SDK leaves its topic in place on close."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, list_topics
from llmops.sdk import LLMOpsClient
from llmops.telemetry.ratelog import REJECTION_LOG_INTERVAL_S
from schemas import InferenceResult
from schemas.topics import TopicSpec, reply_topic
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration


async def partition_counts(bootstrap: str, topic: str) -> dict[int, int]:
    """Records per partition of `topic`, read from the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            await consumer.force_metadata_update()  # first look at this topic
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        counts = dict.fromkeys(range(len(parts)), 0)
        idle = 0
        while idle < 5:
            batches = await consumer.getmany(timeout_ms=200)
            idle = 0 if batches else idle + 1
            for tp, records in batches.items():
                counts[tp.partition] += len(records)
        return counts
    finally:
        await consumer.stop()


async def test_replies_to_a_four_partition_topic_all_reach_the_client(bootstrap: str) -> None:
    client_id = f"wide-{uuid.uuid4().hex[:8]}"
    topic = reply_topic(client_id).name
    wide = TopicSpec(topic, 4, "request id", "a reply topic made with 4 partitions", ())
    await asyncio.to_thread(ensure_topics, bootstrap, [wide])
    async with (
        running_platform(bootstrap),
        LLMOpsClient(bootstrap, client_id=client_id, timeout_s=15) as client,
    ):
        results = await asyncio.gather(
            *(
                client.generate([{"role": "user", "content": f"q {i}"}], max_tokens=2)
                for i in range(12)
            )
        )
        pieces = [
            p async for p in client.stream([{"role": "user", "content": "a b c"}], max_tokens=3)
        ]
    assert len({r.request_id for r in results}) == 12 and pieces
    counts = await partition_counts(bootstrap, topic)
    assert counts[0] >= 12 + len(pieces) + 1 and counts[1] == counts[2] == counts[3] == 0


async def test_close_keeps_the_reply_topic_and_a_reused_client_id_still_works(
    bootstrap: str,
) -> None:
    client_id = f"kept-{uuid.uuid4().hex[:8]}"
    async with running_platform(bootstrap):
        for round_ in range(2):
            async with LLMOpsClient(bootstrap, client_id=client_id, timeout_s=15) as client:
                result = await client.generate([{"role": "user", "content": f"r{round_}"}])
                assert result.error is None
            topics = await asyncio.to_thread(list_topics, bootstrap)
            assert topics[client.reply_topic] == 1


async def test_garbage_on_a_reply_topic_is_logged_at_a_bounded_rate_without_tracebacks(
    bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = [b"\xff not json", b'{"request_id": 5}', b"[" * 100_000, b""] * 8
    async with LLMOpsClient(bootstrap, client_id=f"junk-{uuid.uuid4().hex[:8]}") as client:
        rid = uuid.uuid4().hex
        pending = client.expect(rid)
        producer = Producer(BusConfig(bootstrap, client_id="reply-junk"))
        await producer.start()
        started = time.monotonic()
        try:
            with caplog.at_level(logging.DEBUG, logger="llmops.sdk"):
                for value in garbage:
                    await producer.send(client.reply_topic, value, key=rid)
                reply = InferenceResult(request_id=rid, finish_reason="stop", text="after junk")
                await (await producer.send_event(client.reply_topic, reply, key=rid))
                result = await client.wait(rid, pending, 30)
        finally:
            await producer.stop()
        elapsed = time.monotonic() - started
    assert result.text == "after junk"  # the reader lived through the garbage
    lines = [r for r in caplog.records if r.name == "llmops.sdk"]
    assert lines, "the garbage was not logged at all"
    assert all(r.exc_info is None for r in lines), "a traceback for bad input"
    kinds = Counter(r.getMessage().split(" as ", 1)[1].split(":", 1)[0] for r in lines)
    assert set(kinds) <= {"not_json", "schema_invalid"}, kinds
    bound = 1 + elapsed / REJECTION_LOG_INTERVAL_S
    assert all(n <= bound for n in kinds.values()), (kinds, elapsed)
