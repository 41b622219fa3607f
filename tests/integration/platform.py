"""Run the router and an inference pool in-process against the session's real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from llmops.config import FakePool, PoolConfig, Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import ConsumerLoop
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.prompts.registry import PromptSet, prompt_set_from_data
from services.inference.engines.base import Engine
from services.inference.engines.fake import FakeEngine
from services.inference.service import InferenceWorker, build_worker
from services.router.service import Router, build_router
from tests.kafka_kit import start_at_the_end

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
