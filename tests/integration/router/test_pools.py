"""Heartbeats, live routing and `llmops pools` on the real broker (fake engines: the model is
beside the point; the pools' timing is what matters here)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from llmops.config import FakePool, get_settings
from llmops.kafka.record import Record
from llmops.kafka.tail import TopicTail
from llmops.kafka.topics import ensure_topics
from llmops.routing_config import RoutingConfig
from llmops.sdk import LLMOpsClient, LLMOpsError
from schemas import PoolStatus, utc_now
from schemas.topics import POOL_STATUS
from services.inference.engines.fake import FAIL_MARKER, FakeEngine, FakeEngineConfig
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration


async def eventually(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Beats:
    """Every heartbeat of one pool, from llm.pools.status."""

    def __init__(self, bootstrap: str, pool: str) -> None:
        self.pool = pool
        self.beats: list[PoolStatus] = []
        self.tail = TopicTail(bootstrap, POOL_STATUS.name, self._take)

    def _take(self, record: Record) -> None:
        status = PoolStatus.model_validate_json(record.value or b"")
        if status.pool == self.pool:
            self.beats.append(status)


async def test_heartbeats_report_load_errors_latency_and_a_last_stopping_beat(
    bootstrap: str,
) -> None:
    pool = FakePool(name=f"beat-{uuid.uuid4().hex[:6]}", model="fake", capacity=2)
    engine = FakeEngine(model="fake", config=FakeEngineConfig(ttft_ms=20, tpot_ms=40))
    await asyncio.to_thread(ensure_topics, bootstrap, [POOL_STATUS])
    beats = Beats(bootstrap, pool.name)
    reader = asyncio.create_task(beats.tail.run())
    try:
        async with (
            running_platform(
                bootstrap, [pool], {pool.name: engine}, heartbeat_interval_s=0.1
            ) as platform,
            LLMOpsClient(bootstrap, app="beats") as client,
        ):
            await eventually(lambda: len(beats.beats) > 0, 15, "a first heartbeat")
            calls = [
                client.generate([{"role": "user", "content": f"job {i} a b c"}], max_tokens=8)
                for i in range(10)
            ]
            calls += [
                client.generate([{"role": "user", "content": FAIL_MARKER}], max_tokens=8)
                for _ in range(2)
            ]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            # Rates and totals settle on the next beat after the last reply.
            await eventually(
                lambda: beats.beats[-1].requests_total == 12, 10, "a beat counting all 12"
            )
            settled = beats.beats[-1]
            # A reply can reach the client before the worker has counted it served (it
            # counts once every output is acknowledged), so wait for the count to settle.
            worker = platform.workers[pool.name]
            await eventually(lambda: worker.served >= 12, 10, "the worker counting 12 served")
            served = worker.served
        await eventually(lambda: beats.beats[-1].phase == "stopping", 10, "the last beat")
    finally:
        beats.tail.stop()
        await reader
    failures = [o for o in outcomes if isinstance(o, LLMOpsError)]
    assert len(failures) == 2 and served == 12
    assert all(f.result.error and f.result.error.kind == "engine_error" for f in failures)
    busy = [b for b in beats.beats if b.in_flight > 0]
    assert max(b.in_flight for b in busy) == 2  # capacity: the consumer holds no more
    assert any(b.queue_depth > 0 for b in busy)  # ten waited behind two: consumer lag
    assert settled.errors_total == 2 and settled.error_rate == pytest.approx(2 / 12)
    assert settled.tokens_per_s > 0 and settled.requests_per_s > 0
    assert 0 < settled.latency_p50_ms <= settled.latency_p99_ms
    assert settled.capacity == 2 and settled.models == ["fake"] and settled.healthy
    assert settled.phase == "serving" and settled.instance
    assert len({b.instance for b in beats.beats}) == 1
    last = beats.beats[-1]
    assert last.phase == "stopping" and not last.healthy


async def test_all_pools_down_gets_a_no_healthy_pool_reply(bootstrap: str) -> None:
    pool = FakePool(name=f"down-{uuid.uuid4().hex[:6]}", model="fake")
    engine = FakeEngine(model="fake")
    async with (
        running_platform(
            bootstrap,
            [pool],
            {pool.name: engine},
            heartbeat_interval_s=0.1,
            routing=RoutingConfig(wait_for_pool_s=0.5),  # it waits for a pool, then is told
        ) as p,
        LLMOpsClient(bootstrap, app="down") as client,
    ):
        board = p.router.board
        await eventually(lambda: board.view(pool.name, utc_now()).state == "up", 15, "up")
        await engine.stop()  # the engine reports unhealthy; the pool still beats
        await eventually(
            lambda: board.view(pool.name, utc_now()).state == "unhealthy", 15, "unhealthy"
        )
        with pytest.raises(LLMOpsError) as info:
            await client.generate([{"role": "user", "content": "anyone?"}], timeout_s=30)
    error = info.value.result.error
    assert error is not None and error.kind == "no_healthy_pool"
    assert f"{pool.name} unhealthy" in error.message
    assert p.workers[pool.name].served == 0 and p.router.no_healthy_pool == 1


async def test_llmops_pools_once_shows_state_cost_and_load(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.cli.app import app

    suffix = uuid.uuid4().hex[:6]
    pool = FakePool(
        name=f"shown-{suffix}",
        model="fake",
        provider="aws",
        region="eu-west-1",
        gpu="l4",
        cost_per_1k_tokens=0.25,
        cost_per_gpu_hour=1.5,
        capacity=6,
    )
    ghost = FakePool(name=f"ghost-{suffix}", model="fake")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("LLMOPS_POOLS", json.dumps([pool.model_dump(), ghost.model_dump()]))
    get_settings.cache_clear()
    try:
        async with (
            running_platform(bootstrap, [pool], heartbeat_interval_s=0.1) as platform,
            LLMOpsClient(bootstrap, app="cli") as client,
        ):
            await asyncio.gather(
                *(client.generate([{"role": "user", "content": "x"}]) for _ in range(5))
            )
            board = platform.router.board
            await eventually(
                lambda: board.view(pool.name, utc_now()).requests_per_s > 0, 15, "traffic"
            )
            result = await asyncio.to_thread(
                CliRunner().invoke, app, ["pools", "--once", "--since", "0"]
            )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "│" in line}
    shown = rows[pool.name]
    for cell in ("up", "aws/eu-west-1", "l4", "0.25", "1.5", "100%"):
        assert cell in shown, (cell, shown)
    assert "unknown" in rows[ghost.name] and "never" in rows[ghost.name]
    assert len(rows) == 3  # header + the two configured pools: other tests' pools are hidden
