"""A pool instance's heartbeat: its PoolStatus on llm.pools.status every interval.

It starts before the engine loads (phase "starting": routers know the pool is coming and may
queue work for it), reports "serving" while the consumer runs, and sends a last "stopping"
beat on a clean stop. A killed instance simply goes silent: routers declare it dead when its
beats are older than their `dead_after_s`.

Queue depth is the consumer's lag on its assigned partitions: the fetch high watermark minus
the consumer's position (records not yet taken). Fetch high watermarks are right on every
broker; ListOffsets LATEST (end_offsets) is not on Tansu, so it is never used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from llmops.config import PoolConfig, Settings
from llmops.kafka.consumer import ConsumerLoop
from llmops.kafka.producer import Producer
from llmops.telemetry import metrics
from schemas import PoolPhase, PoolStatus, utc_now
from schemas.topics import POOL_STATUS
from services.inference.engines.base import Engine
from services.inference.health import HealthWindow, pool_status

log = logging.getLogger(__name__)
# A beat whose send is not acknowledged within this many intervals is given up (logged).
ACK_INTERVALS = 3.0
MIN_ACK_WAIT_S = 2.0
STOP_WAIT_S = 5.0
POSITION_TIMEOUT_S = 0.25


def instance_id() -> str:
    """Host, process and a random suffix: a restarted process is a new instance."""
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def consumer_lag(consumer: AIOKafkaConsumer) -> int:
    """Records in the assigned partitions not yet taken by the consumer (0 before a fetch)."""
    depth = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        try:
            async with asyncio.timeout(POSITION_TIMEOUT_S):
                position = await consumer.position(tp)
        except Exception:  # revoked meanwhile, or not fetched yet: leave it out of this beat
            continue
        depth += max(high - position, 0)
    return depth


class Heartbeat:
    def __init__(
        self, settings: Settings, pool: PoolConfig, producer: Producer, engine: Engine
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._producer = producer
        self._engine = engine
        self.instance = instance_id()
        self.health = HealthWindow(settings.health_window_s, started_at=time.monotonic())
        self.phase: PoolPhase = "starting"
        self.consumer: AIOKafkaConsumer | None = None
        self.in_flight: Callable[[], int] = lambda: 0
        self.beats = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def engine_healthy(self) -> bool:
        try:
            return self._engine.stats().extra.get("healthy", 1.0) > 0.5
        except Exception:  # an engine that cannot even report is not healthy
            return False

    async def status(self) -> PoolStatus:
        queue_depth = await consumer_lag(self.consumer) if self.consumer is not None else 0
        metrics.QUEUE_DEPTH.labels(self._pool.name).set(queue_depth)
        return pool_status(
            self._pool,
            self.health.snapshot(time.monotonic()),
            instance=self.instance,
            phase=self.phase,
            healthy=self.engine_healthy(),
            in_flight=self.in_flight(),
            queue_depth=queue_depth,
            ts=utc_now(),
        )

    async def beat(self) -> None:
        status = await self.status()
        # The whole beat is bounded, the send too: with the broker gone, aiokafka's send
        # waits for metadata up to its request timeout (40 s), which held up a pool's stop.
        async with asyncio.timeout(
            max(self._settings.heartbeat_interval_s * ACK_INTERVALS, MIN_ACK_WAIT_S)
        ):
            # Signed: routers take only beats under the deployment key (a forged one is dropped).
            ack = await self._producer.send_event(
                POOL_STATUS.name, status, key=self._pool.name, sign=True
            )
            await ack
        self.beats += 1

    async def run(self) -> None:
        """Beat until stopped; a failed beat is logged and the next one tried on time."""
        interval = self._settings.heartbeat_interval_s
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self.beat()
            except Exception as exc:
                log.warning("heartbeat of pool %s failed: %r", self._pool.name, exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(interval - (time.monotonic() - started), 0.0)):
                    await self._stopping.wait()

    async def on_loop_start(self, loop: ConsumerLoop) -> None:
        """A pool's consumer loop companion: beat its lag and in-flight work as "serving"."""
        self.consumer = loop.consumer
        self.in_flight = lambda: loop.in_flight
        self.phase = "serving"
        self.start()

    def on_loop_stopping(self) -> None:
        # Tell routers at the next beat, while in-flight work drains.
        self.phase = "stopping"

    async def on_loop_end(self) -> None:
        await self.stop()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self.run(), name=f"heartbeat-{self._pool.name}")

    async def stop(self) -> None:
        """Stop beating; a last beat says "stopping" so routers move on at once."""
        if self._task is None:
            return
        # An event, not cancel(): on Python 3.11 a cancel can be lost inside aiokafka's
        # waits, and a loop that missed it would beat forever.
        self._stopping.set()
        await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
        if not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
        self._task = None
        self.phase = "stopping"
        try:
            await self.beat()
        except Exception as exc:
            log.warning("last heartbeat of pool %s failed: %r", self._pool.name, exc)
