"""While the only pool restarts, a request waits for it instead of failing at once.

On the real broker: the router and one fake-engine pool in this process; the pool is stopped
and declared dead, a request is sent, the pool is started again, and the request is served
by it (before: answered `no_healthy_pool` within a moment of arriving).
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from llmops.config import FakePool, PoolConfig, Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.prompts.registry import prompt_set_from_data
from llmops.routing_config import RoutingConfig
from llmops.sdk import LLMOpsClient
from schemas import LabelMove, utc_now
from services.inference.engines.fake import FakeEngine
from services.inference.service import PoolLoop, build_worker
from services.router.service import Router, build_router
from tests.integration.platform import PROMPTS

pytestmark = pytest.mark.integration


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run_pool(settings: Settings, pool: PoolConfig) -> tuple[PoolLoop, asyncio.Task[None]]:
    producer = Producer(BusConfig.from_settings(settings, client_id="pool-wait-pool"))
    await producer.start()
    engine = FakeEngine(model=pool.model)
    await engine.start()
    _, loop = build_worker(settings, pool, engine, producer)

    async def run() -> None:
        try:
            await loop.run()
        finally:
            await engine.stop()
            await producer.stop()

    return loop, asyncio.create_task(run())


def wait_settings(bootstrap: str, pool: PoolConfig) -> Settings:
    """One pool, declared dead 1 s after its last heartbeat; requests wait up to 120 s."""
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        pools=[pool],
        routing=RoutingConfig(dead_after_s=1.0, wait_for_pool_s=120.0),
    )


async def lose_the_pool(router: Router, settings: Settings, pool: PoolConfig) -> None:
    """The pool serves (the router sees it up), then stops and is declared dead."""
    pool_loop, pool_task = await run_pool(settings, pool)
    try:
        await eventually(lambda: router.board.view(pool.name, utc_now()).state == "up", "pool up")
    finally:
        pool_loop.stop()
        await pool_task
    await eventually(lambda: router.board.view(pool.name, utc_now()).state == "dead", "dead")


async def test_a_request_waits_for_the_only_pool_to_come_back(bootstrap: str) -> None:
    pool = FakePool(name=f"only-{uuid.uuid4().hex[:6]}", model="fake")
    settings = wait_settings(bootstrap, pool)
    await asyncio.to_thread(ensure_topics, bootstrap, platform_topics([pool.name]))
    producer = Producer(BusConfig.from_settings(settings, client_id="pool-wait-router"))
    await producer.start()
    router, router_loop = build_router(settings, prompt_set_from_data(PROMPTS), producer)
    routing = asyncio.create_task(router_loop.run())
    restarted: tuple[PoolLoop, asyncio.Task[None]] | None = None
    try:
        await lose_the_pool(router, settings, pool)
        async with LLMOpsClient(bootstrap, app="pool-wait") as client:
            request = client.build_request([{"role": "user", "content": "wait for me"}])
            pending = await client.submit(request)
            await eventually(lambda: router.waiting.parked == 1, "the request parked")
            assert router_loop.in_flight >= 1  # its offset is not committed while it waits
            assert not pending.result.done()

            restarted = await run_pool(settings, pool)
            result = await client.wait(request.request_id, pending, 90)

        assert result.error is None, result.error
        assert result.pool == pool.name
        assert router.no_healthy_pool == 0
        assert router.waiting.parked == 0
    finally:
        tasks = [routing]
        if restarted is not None:
            restarted[0].stop()
            tasks.append(restarted[1])
        router_loop.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()


async def test_a_waiting_request_whose_prompt_stops_resolving_gets_the_prompt_s_error(
    bootstrap: str,
) -> None:
    """While a request waits for the only pool, `production` moves to a version with a new
    required variable the request lacks: no pool can fix that, so it is answered at once as a
    missing variable (it was answered `no_healthy_pool` once its wait ran out)."""
    pool = FakePool(name=f"gone-{uuid.uuid4().hex[:6]}", model="fake")
    settings = wait_settings(bootstrap, pool)
    data: Any = copy.deepcopy(PROMPTS)  # greet: v1 production; v2 needs `plan` besides `name`
    data["prompts"][0]["versions"][1]["messages"] = [
        {"role": "user", "content": "Hi {{ name }} on {{ plan }}"}
    ]
    prompts = prompt_set_from_data(data)
    await asyncio.to_thread(ensure_topics, bootstrap, platform_topics([pool.name]))
    producer = Producer(BusConfig.from_settings(settings, client_id="pool-wait-router-2"))
    await producer.start()
    router, router_loop = build_router(settings, prompts, producer)
    routing = asyncio.create_task(router_loop.run())
    try:
        await lose_the_pool(router, settings, pool)
        async with LLMOpsClient(bootstrap, app="pool-wait") as client:
            request = client.build_request(
                None, prompt="greet", label="production", variables={"name": "Ada"}
            )
            pending = await client.submit(request)
            await eventually(lambda: router.waiting.parked == 1, "the request parked")
            prompts.move_label(LabelMove(name="greet", label="production", version=2))
            result = await client.wait(request.request_id, pending, 90)
        assert result.error is not None and result.error.kind == "missing_variable"
        assert "plan" in result.error.message
        assert router.no_healthy_pool == 0 and router.waiting.parked == 0
    finally:
        router_loop.stop()
        await asyncio.gather(routing, return_exceptions=True)
        await producer.stop()
