"""Bad input on any consumed topic lands in llm.dlq with the reason and the original bytes;
the consumer keeps going, and the app hears back when its reply topic is known."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.sdk import LLMOpsClient
from schemas import DeadLetter
from schemas.topics import DLQ, REQUESTS, inference_topic
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration


async def read_dead_letters(
    bootstrap: str, marker: str, expected: int, timeout_s: float = 30
) -> list[DeadLetter]:
    """Dead letters whose original payload contains `marker`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(DLQ.name, p) for p in range(DLQ.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found: dict[str, DeadLetter] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(found) < expected and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        letter = DeadLetter.model_validate_json(record.value)
                    except ValueError:
                        continue  # another test's deliberately bad record
                    if marker.encode() in base64.b64decode(letter.payload_b64):
                        found[letter.event_id] = letter
        return list(found.values())
    finally:
        await consumer.stop()


async def test_five_kinds_of_bad_requests_are_dead_lettered_and_answered(bootstrap: str) -> None:
    marker = uuid.uuid4().hex
    async with (
        running_platform(bootstrap, max_message_bytes=4096) as platform,
        LLMOpsClient(bootstrap) as client,
    ):
        producer = Producer(BusConfig(bootstrap))
        await producer.start()
        reply_to = client.reply_topic
        good = {"messages": [{"role": "user", "content": marker}], "reply_to": reply_to}
        bad_inputs = {
            "not_json": f"{{not json {marker}".encode(),
            "schema_invalid": json.dumps(
                {**good, "request_id": "bad-1", "sampling": {"max_tokens": -3}}
            ).encode(),
            "oversized": json.dumps(
                {**good, "request_id": "big-1", "context": "x" * 10_000}
            ).encode(),
            "unroutable": json.dumps(
                {**good, "request_id": "unr-1", "model": "no-such-model"}
            ).encode(),
            "unknown_prompt": json.dumps(
                {
                    "prompt": {"name": "nope", "variables": {"m": marker}},
                    "request_id": "unk-1",
                    "reply_to": reply_to,
                }
            ).encode(),
        }
        answered = {rid: client.expect(rid) for rid in ("bad-1", "big-1", "unr-1", "unk-1")}
        for payload in bad_inputs.values():
            await (await producer.send(REQUESTS.name, payload, key=marker))
        # Bad input straight onto a pool's topic: the inference consumer dead-letters it too.
        pool_topic = inference_topic(platform.settings.pools[0].name).name
        await (await producer.send(pool_topic, json.dumps([1, 2, marker]).encode(), key=marker))
        # ... and the consumers keep going: a good request after all that is served.
        result = await client.generate([{"role": "user", "content": "still alive"}], max_tokens=2)
        assert result.text
        letters = await read_dead_letters(bootstrap, marker, expected=6)
        replies = {rid: await client.wait(rid, pending, 30) for rid, pending in answered.items()}
        await producer.stop()

    for request_id, reply in replies.items():
        assert reply.request_id == request_id
        assert reply.finish_reason == "error" and reply.error is not None
    assert replies["unr-1"].error is not None and replies["unr-1"].error.kind == "unroutable"
    assert replies["big-1"].error is not None and "oversized" in replies["big-1"].error.message
    kinds = sorted(letter.kind for letter in letters)
    assert kinds == sorted(
        [
            "not_json",
            "schema_invalid",
            "oversized",
            "unroutable",
            "unknown_prompt",
            "schema_invalid",
        ]
    )
    by_kind = {}
    for letter in letters:
        by_kind.setdefault(letter.kind, []).append(letter)
    for kind, payload in bad_inputs.items():
        letter = next(x for x in by_kind[kind] if x.source_topic == REQUESTS.name)
        assert letter.service == "router"
        assert letter.source_offset >= 0 and 0 <= letter.source_partition < REQUESTS.partitions
        assert (
            base64.b64decode(letter.payload_b64)
            == payload[: len(base64.b64decode(letter.payload_b64))]
        )
        assert letter.payload_size == len(payload)
        assert letter.reason
    assert (
        "max_tokens" in by_kind["schema_invalid"][0].reason
        or "max_tokens" in by_kind["schema_invalid"][1].reason
    )
    assert "exceeds the limit of 4096" in by_kind["oversized"][0].reason
    assert (
        by_kind["unroutable"][0].request_id == "unr-1"
        and by_kind["unroutable"][0].reply_to == reply_to
    )
    pool_letter = next(x for x in letters if x.source_topic == pool_topic)
    assert pool_letter.service.startswith("inference-") and pool_letter.kind == "schema_invalid"
