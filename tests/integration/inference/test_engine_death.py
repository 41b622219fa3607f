"""Engine faults on the real broker. The issue's request (top_k = 2**31) gets an error reply
and the pool serves on. A pool whose engine dies: the requests the engine had get engine_error
replies (and count as done), the pool's loop and process end so they are restarted, and a
request the dead pool took but never answered is served by the next instance."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmops.config import FakePool, PoolConfig, Settings, TransformersPool
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, platform_topics
from schemas import (
    ChatMessage,
    InferenceResult,
    PromptRequest,
    RoutedRequest,
    SamplingParams,
    utc_now,
)
from schemas.topics import REQUESTS, inference_group, inference_topic, reply_topic
from services.inference.engines.fake import DIE_MARKER, FakeEngine, FakeEngineConfig
from services.inference.engines.transformers_engine import TransformersEngine
from services.inference.models import build_tiny_model, build_tiny_tokenizer
from services.inference.service import EngineDiedError, build_worker
from tests.engine_kit import TINY_CONFIG
from tests.integration.platform import running_platform
from tests.signing_kit import TEST_KEY_ID, TEST_SIGNING_KEY

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # an upper bound for the broker to deliver, never a measured expectation


class Replies:
    """Every result on one reply topic, by request id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        self._topic = topic
        self.results: dict[str, list[InferenceResult]] = {}

    async def __aenter__(self) -> Replies:
        await self._consumer.start()
        self._consumer.assign([TopicPartition(self._topic, 0)])
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def wait_for(self, request_ids: set[str]) -> dict[str, InferenceResult]:
        async with asyncio.timeout(WAIT_S):
            while not request_ids <= self.results.keys():
                batches = await self._consumer.getmany(timeout_ms=200)
                for record in (r for rs in batches.values() for r in rs):
                    headers = dict(record.headers or ())
                    if headers.get("llmops-event") == b"InferenceResult":
                        result = InferenceResult.from_bytes(record.value)
                        self.results.setdefault(result.request_id, []).append(result)
        return {rid: self.results[rid][-1] for rid in request_ids}


def routed(pool: PoolConfig, reply_to: str, content: str, max_tokens: int) -> RoutedRequest:
    messages = [ChatMessage(role="user", content=content)]
    sampling = SamplingParams(max_tokens=max_tokens)
    request = PromptRequest(messages=messages, reply_to=reply_to, sampling=sampling)
    return RoutedRequest(
        request=request,
        messages=messages,
        pool=pool.name,
        model=pool.model,
        route_reason="test",
        routed_at=utc_now(),
    )


@pytest.fixture
async def setup(bootstrap: str) -> AsyncIterator[tuple[Settings, PoolConfig, str, Producer]]:
    suffix = uuid.uuid4().hex[:8]
    pool = FakePool(name=f"dies-{suffix}", model="fake", capacity=8)
    settings = Settings(kafka_bootstrap_servers=bootstrap, pools=[pool])
    replies = reply_topic(f"engine-death-{suffix}")
    await asyncio.to_thread(ensure_topics, bootstrap, [*platform_topics([pool.name]), replies])
    async with Producer(BusConfig.from_settings(settings, client_id=f"test-{suffix}")) as producer:
        yield settings, pool, replies.name, producer


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():  # noqa: ASYNC110 (engine stats change with no event to wait on)
            await asyncio.sleep(0.05)


async def test_the_issue_request_is_refused_and_the_pool_serves_on(
    bootstrap: str, setup: tuple[Settings, PoolConfig, str, Producer]
) -> None:
    """The request from the issue, as an app sent it: it switched the transformers pool off
    for good (int32 overflow in the generation loop)."""
    _, _, reply_to, producer = setup
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    pool = TransformersPool(name=f"tiny-{uuid.uuid4().hex[:8]}", model="tiny-random", capacity=4)
    engine = TransformersEngine("tiny-random", lambda: (model, tokenizer), TINY_CONFIG)
    issue = {
        "request_id": f"issue-{uuid.uuid4().hex[:8]}",
        "reply_to": reply_to,
        "messages": [{"role": "user", "content": "hi"}],
        "sampling": {"max_tokens": 2, "temperature": 0.7, "top_k": 2147483648},
    }
    sampling = SamplingParams(max_tokens=3, temperature=0.7, top_k=5)
    good = PromptRequest(messages=[ChatMessage(role="user", content="hi")], reply_to=reply_to)
    good = good.model_copy(update={"sampling": sampling})
    async with (
        running_platform(bootstrap, pools=[pool], engines={pool.name: engine}),
        Replies(bootstrap, reply_to) as replies,
    ):
        await (await producer.send(REQUESTS.name, json.dumps(issue).encode(), key="k"))
        await (await producer.send_event(REQUESTS.name, good, key=good.request_id))
        results = await replies.wait_for({issue["request_id"], good.request_id})
        healthy_after = engine.stats().extra["healthy"]
    refused = results[issue["request_id"]]
    assert refused.error is not None and refused.error.kind == "invalid_request"
    assert "top_k" in refused.error.message
    assert results[good.request_id].ok and results[good.request_id].usage.output_tokens == 3
    assert healthy_after == 1.0


async def test_a_dying_engine_fails_in_flight_requests_and_stops_the_pool(
    bootstrap: str, setup: tuple[Settings, PoolConfig, str, Producer]
) -> None:
    settings, pool, reply_to, producer = setup
    topic = inference_topic(pool.name).name
    engine = FakeEngine(model="fake", config=FakeEngineConfig(tpot_ms=50))
    await engine.start()
    _, loop = build_worker(settings, pool, engine, producer)
    running = asyncio.create_task(loop.run())
    async with Replies(bootstrap, reply_to) as replies:
        slow = [routed(pool, reply_to, f"slow answer {i}", max_tokens=4000) for i in range(3)]
        acks = [await producer.send_event(topic, r, key=r.request_id) for r in slow]
        await eventually(lambda: engine.stats().running == 3)  # all three in flight
        killer = routed(pool, reply_to, f"please {DIE_MARKER}", max_tokens=5)
        acks.append(await producer.send_event(topic, killer, key=killer.request_id))
        # Sent after the death: the dying pool may still take it, but must neither start,
        # answer nor commit it.
        await eventually(lambda: engine.failure() is not None)
        after = routed(pool, reply_to, "after the death", max_tokens=3)
        after_ack = await producer.send_event(topic, after, key=after.request_id)

        with pytest.raises(EngineDiedError, match="generation loop died"):
            await asyncio.wait_for(running, WAIT_S)
        failed = await replies.wait_for({r.request_id for r in [*slow, killer]})
        assert {r.error.kind for r in failed.values() if r.error} == {"engine_error"}
        assert all(r.finish_reason == "error" for r in failed.values())

        # Answered requests count as done; the unanswered one is not committed.
        written = [await ack for ack in acks]
        after_at = await after_ack
        committed = await _committed(bootstrap, inference_group(pool.name), topic)
        for meta in written:
            assert committed.get(meta.partition, -1) > meta.offset
        assert committed.get(after_at.partition, -1) <= after_at.offset
        assert after.request_id not in replies.results

        # The next instance (a restarted process) serves what the dead one left.
        fresh = FakeEngine(model="fake")
        await fresh.start()
        _, next_loop = build_worker(settings, pool, fresh, producer)
        next_running = asyncio.create_task(next_loop.run())
        try:
            served = await replies.wait_for({after.request_id})
        finally:
            next_loop.stop()
            await asyncio.wait_for(next_running, WAIT_S)
            await fresh.stop()
        assert served[after.request_id].ok and served[after.request_id].usage.output_tokens == 3
        assert all(len(replies.results[r.request_id]) == 1 for r in [*slow, killer])
    await engine.stop()


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        found = {}
        for partition in partitions:
            offset = await consumer.committed(TopicPartition(topic, partition))
            if offset is not None:
                found[partition] = offset
        return found
    finally:
        await consumer.stop()


def test_the_pool_process_exits_non_zero_when_its_engine_dies(
    bootstrap: str, tmp_path: Path
) -> None:
    """What the supervisor (llmops up) and Kubernetes restart: a process that exits."""
    suffix = uuid.uuid4().hex[:8]
    pool = FakePool(name=f"dies-proc-{suffix}", model="fake")
    ensure_topics(bootstrap, platform_topics([pool.name]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOPS_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        LLMOPS_DATA_DIR=str(tmp_path),
        LLMOPS_POOLS=json.dumps([pool.model_dump()]),
        LLMOPS_SIGNING_KEY=TEST_SIGNING_KEY,
        LLMOPS_SIGNING_KEY_ID=TEST_KEY_ID,
    )
    log = tmp_path / "pool.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.inference", "--pool", pool.name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        killer = routed(pool, reply_topic(f"proc-{suffix}").name, DIE_MARKER, max_tokens=2)

        async def send() -> None:
            async with Producer(BusConfig(bootstrap, client_id=f"test-{suffix}")) as producer:
                await (await producer.send_event(inference_topic(pool.name).name, killer))

        asyncio.run(send())
        code = proc.wait(WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 3, text
    assert "its engine died" in text and "Traceback" not in text
