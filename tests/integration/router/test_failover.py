"""Failover on the real broker: three pools (cheap, mid, pricey; fake engines with set
latencies), the cheap one killed with SIGKILL mid-load.

Asserted on routing outcomes, not on timings: requests sent once the router has declared the
cheap pool dead all go to mid, saying why; the requests the cheap pool held when it died are
rescued from its topic; every request gets exactly one final reply at the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmops.config import FakePool, PoolConfig, Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import ConsumerLoop
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.prompts.registry import prompt_set_from_data
from llmops.sdk import LLMOpsClient
from schemas import InferenceResult, PromptRequest, utc_now
from services.inference.engines.factory import create_engine
from services.inference.service import build_worker
from services.router.service import Router, RouterLoop, build_router
from tests.integration.platform import PROMPTS
from tests.kafka_kit import start_at_the_end
from tests.signing_kit import TEST_SIGNING_KEY

pytestmark = pytest.mark.integration
POST_DEAD_REQUESTS = 20
SEND_EVERY_S = 0.05


async def eventually(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Sent:
    request: PromptRequest
    phase: str  # "alive" | "dying" (killed, not yet declared dead) | "dead"
    reply: asyncio.Future[InferenceResult]


@dataclass
class Load:
    sent: list[Sent] = field(default_factory=list)
    phase: str = "alive"

    def answered_by(self, pool: str) -> int:
        return sum(
            1
            for s in self.sent
            if s.reply.done() and not s.reply.cancelled() and s.reply.result().pool == pool
        )

    def in_phase(self, phase: str) -> list[Sent]:
        return [s for s in self.sent if s.phase == phase]


@contextlib.asynccontextmanager
async def router_and_pools(
    settings: Settings, in_process: list[PoolConfig], data_dir: Path
) -> AsyncIterator[tuple[Router, RouterLoop]]:
    """The router and some pools in this process (each with its own producer)."""
    producers = [
        Producer(BusConfig.from_settings(settings, client_id=f"svc-{i}"))
        for i in range(len(in_process) + 1)
    ]
    for producer in producers:
        await producer.start()
    group = f"llmops-router-{uuid.uuid4().hex[:6]}"
    await start_at_the_end(settings.kafka_bootstrap_servers, group)
    router, router_loop = build_router(
        settings, prompt_set_from_data(PROMPTS), producers[0], group_id=group
    )
    loops: list[ConsumerLoop] = [router_loop]
    engines = [create_engine(pool, data_dir) for pool in in_process]
    for pool, engine, producer in zip(in_process, engines, producers[1:], strict=True):
        await engine.start()
        loops.append(build_worker(settings, pool, engine, producer)[1])
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        yield router, router_loop
    finally:
        for loop in loops:
            loop.stop()
        await asyncio.wait(tasks, timeout=60)
        for engine in engines:
            await engine.stop()
        for producer in producers:
            await producer.stop()


def start_pool_process(pool: PoolConfig, bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOPS_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LLMOPS_DATA_DIR": str(log.parent),
            "LLMOPS_METRICS_BASE_PORT": "0",
            "LLMOPS_POOLS": json.dumps([pool.model_dump()]),
            "LLMOPS_SIGNING_KEY": TEST_SIGNING_KEY,  # its beats must pass the router's check
        }
    )
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.inference", "--pool", pool.name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def send_until(client: LLMOpsClient, load: Load, stop: asyncio.Event) -> None:
    """An open loop: one request every SEND_EVERY_S, each tagged with the phase it was sent in."""
    i = 0
    while not stop.is_set():
        request = client.build_request(
            [{"role": "user", "content": f"job {i} one two three"}],
            max_tokens=8,
            user_id=f"user-{i}",
        )
        phase = load.phase
        pending = await client.submit(request)
        reply = asyncio.ensure_future(client.wait(request.request_id, pending, 90))
        load.sent.append(Sent(request, phase, reply))
        i += 1
        await asyncio.sleep(SEND_EVERY_S)


async def test_killing_the_cheap_pool_moves_traffic_and_rescues_its_queue(
    bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    # cheap: slow and small, so it queues work (and saturates: some traffic spills to mid).
    cheap = FakePool(
        name=f"cheap-{suffix}",
        model="fake",
        cost_per_1k_tokens=0.1,
        capacity=4,
        fake_ttft_ms=30,
        fake_tpot_ms=40,
    )
    mid = FakePool(
        name=f"mid-{suffix}",
        model="fake",
        cost_per_1k_tokens=0.5,
        capacity=32,
        fake_ttft_ms=5,
        fake_tpot_ms=5,
    )
    pricey = mid.model_copy(update={"name": f"pricey-{suffix}", "cost_per_1k_tokens": 2.0})
    settings = Settings(kafka_bootstrap_servers=bootstrap, pools=[cheap, mid, pricey])
    await asyncio.to_thread(
        ensure_topics, bootstrap, platform_topics(p.name for p in settings.pools)
    )
    log = tmp_path / "cheap.log"
    cheap_proc = start_pool_process(cheap, bootstrap, log)
    load, stop_sending = Load(), asyncio.Event()
    try:
        async with (
            router_and_pools(settings, [mid, pricey], tmp_path) as (router, router_loop),
            LLMOpsClient(bootstrap, app="failover", timeout_s=90) as client,
        ):
            board = router.board
            for pool in settings.pools:
                await eventually(
                    lambda p=pool.name: board.view(p, utc_now()).state == "up",
                    60,
                    f"{pool.name} up",
                )
            sender = asyncio.create_task(send_until(client, load, stop_sending))
            # Kill it while it holds work: it answered some, and was sent more than that.
            await eventually(
                lambda: (
                    load.answered_by(cheap.name) >= 3
                    and router.routed_by_pool[cheap.name] - load.answered_by(cheap.name) >= 2
                ),
                30,
                "the cheap pool busy",
            )
            assert cheap_proc.poll() is None, log.read_text()
            cheap_proc.send_signal(signal.SIGKILL)
            cheap_proc.wait()
            load.phase = "dying"
            killed_at = time.monotonic()
            answered_by_cheap = load.answered_by(cheap.name)

            await eventually(lambda: board.view(cheap.name, utc_now()).state == "dead", 30, "dead")
            declared = board.view(cheap.name, utc_now())
            load.phase = "dead"
            declared_after_kill_s = time.monotonic() - killed_at
            await eventually(
                lambda: len(load.in_phase("dead")) >= POST_DEAD_REQUESTS, 30, "post-death load"
            )
            stop_sending.set()
            await sender
            results = await asyncio.gather(*(s.reply for s in load.sent))
            rescuers = router_loop.control.rescues
            rescue_started = rescuers.rescuers_started
            rescuing = set(rescuers.active())
            duplicates = client.duplicates
    finally:
        stop_sending.set()
        if cheap_proc.poll() is None:
            cheap_proc.kill()
            cheap_proc.wait()

    # Exactly one final reply per request at the app, none of them an error.
    assert [r.request_id for r in results] == [s.request.request_id for s in load.sent]
    assert all(r.error is None and r.text for r in results), [r.error for r in results]

    # The board waited past dead_after for the silence, no longer than it takes to notice.
    assert declared.age_s is not None and declared.age_s > settings.routing.dead_after_s

    # Every request sent once the cheap pool was declared dead went to mid, saying why.
    after = [r for s, r in zip(load.sent, results, strict=True) if s.phase == "dead"]
    assert len(after) >= POST_DEAD_REQUESTS
    assert {r.pool for r in after} == {mid.name}
    for r in after:
        assert r.route_reason and r.route_reason.startswith(f"failover: {mid.name} at $0.5")
        assert f"{cheap.name} dead (no heartbeat for" in r.route_reason

    # Before the kill, cheap took what its headroom allowed and the rest spilled over.
    before = [r for s, r in zip(load.sent, results, strict=True) if s.phase == "alive"]
    reasons = {r.route_reason.split(":")[0] for r in before if r.route_reason}
    assert "cheapest_healthy" in reasons

    # What cheap held when it died was rescued from its topic to a live pool, once each:
    # every request routed to cheap was answered by cheap (before the kill) or by a rescue.
    rescued = [r for r in results if (r.route_reason or "").startswith("rescued: from")]
    assert rescued, "the kill should strand requests in the cheap pool's topic"
    for r in rescued:
        assert r.route_reason is not None
        assert r.route_reason.startswith(f"rescued: from {cheap.name} dead")
        assert r.pool in {mid.name, pricey.name}
    by_cheap = [r for r in results if r.pool == cheap.name]
    assert len(by_cheap) == answered_by_cheap
    assert router.routed_by_pool[cheap.name] == len(by_cheap) + len(rescued)
    # Only the dead pool was ever rescued: live pools were never joined.
    assert rescue_started == 1 and rescuing == {cheap.name}
    print(
        f"\ncheap killed after answering {answered_by_cheap}; declared dead "
        f"{declared_after_kill_s:.1f}s after the kill ({declared.why}); "
        f"{len(after)} requests after that all on mid; {len(rescued)} rescued; "
        f"{duplicates} duplicate replies absorbed by the SDK"
    )
