"""Run the router and an inference pool in-process against the session's real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from llmops.config import FakePool, PoolConfig, Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import ConsumerLoop
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.prompts.registry import PromptSet, prompt_set_from_data
from schemas.topics import REQUESTS
from services.inference.engines.base import Engine
from services.inference.engines.fake import FakeEngine
from services.inference.service import InferenceWorker, build_worker
from services.router.service import Router, build_router

PROMPTS = {
    "prompts": [
        {
            "name": "greet",
            "versions": [
                {
                    "version": 1,
                    "labels": ["production"],
                    "messages": [{"role": "user", "content": "Hello {{ name }}"}],
                },
                {"version": 2, "messages": [{"role": "user", "content": "Hi {{ name }}"}]},
            ],
        },
    ],
    "experiments": [
        {
            "name": "greet-ab",
            "prompt_name": "greet",
            "variants": [
                {"name": "control", "prompt_version": 1, "weight": 1},
                {"name": "treatment", "prompt_version": 2, "weight": 1},
            ],
        },
    ],
}


@dataclass
class Platform:
    settings: Settings
    router: Router
    workers: dict[str, InferenceWorker]
    loops: list[ConsumerLoop]


def unique_settings(bootstrap: str, pools: list[PoolConfig], **kw: object) -> Settings:
    return Settings(kafka_bootstrap_servers=bootstrap, pools=pools, **kw)


async def start_at_the_end(bootstrap: str, group_id: str) -> None:
    """Commit a new router group at the end of llm.requests. Tests share one broker: a router
    starting from the beginning (or from a shared group's offsets) would serve what earlier
    tests left there (requests the metrics worker's tests write directly, requests parked when
    a platform stopped) on this test's pools, skewing its counts. The end is read from fetch
    high watermarks: Tansu's ListOffsets LATEST is wrong for multi-record batches."""
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
        async with asyncio.timeout(30):
            while not await _at_end(consumer, partitions):
                await consumer.getmany(timeout_ms=100, max_records=10_000)
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


@contextlib.asynccontextmanager
async def running_platform(
    bootstrap: str,
    pools: list[PoolConfig] | None = None,
    engines: dict[str, Engine] | None = None,
    prompts: PromptSet | None = None,
    **settings_kw: object,
) -> AsyncIterator[Platform]:
    """Router + one worker per pool, each in its own consumer group for isolation per test."""
    suffix = uuid.uuid4().hex[:6]
    pools = pools or [FakePool(name=f"fake-{suffix}", model="fake")]
    settings = unique_settings(bootstrap, pools, **settings_kw)
    await asyncio.to_thread(ensure_topics, bootstrap, platform_topics(p.name for p in pools))
    router_group = f"llmops-router-{suffix}"
    await start_at_the_end(bootstrap, router_group)
    # One producer per service, as in production where each runs in its own process.
    producers = [
        Producer(BusConfig.from_settings(settings, client_id=f"svc-{i}"))
        for i in range(len(pools) + 1)
    ]
    for producer in producers:
        await producer.start()
    router, router_loop = build_router(
        settings, prompts or prompt_set_from_data(PROMPTS), producers[0], group_id=router_group
    )
    loops = [router_loop]
    workers = {}
    engines = engines or {}
    for pool, producer in zip(pools, producers[1:], strict=True):
        engine = engines.get(pool.name) or FakeEngine(model=pool.model)
        await engine.start()
        engines[pool.name] = engine
        worker, loop = build_worker(settings, pool, engine, producer)
        workers[pool.name] = worker
        loops.append(loop)
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        yield Platform(settings, router, workers, loops)
    finally:
        for loop in loops:
            loop.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for engine in engines.values():
            await engine.stop()
        for producer in producers:
            await producer.stop()
