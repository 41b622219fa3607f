"""Producers and consumers stopped while their broker is gone stop: a producer gives up on what
cannot be delivered instead of holding the process for aiokafka's whole request timeout
(40 s), with a clear error for what it gave up on; a consumer loop's last commit, which
aiokafka retries forever, is given up too (those records are consumed again). The real broker
(one of each test's own, to kill)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import ConsumerConfig, ConsumerLoop
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from llmops.kafka.topics import ensure_topics
from llmops.local.broker import start_broker
from llmops.local.procs import free_port
from schemas.topics import DLQ, TopicSpec

pytestmark = pytest.mark.integration


async def test_stop_gives_up_on_a_dead_broker(tmp_path: Path) -> None:
    port = free_port()
    broker = start_broker("127.0.0.1", port, tmp_path / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    try:
        producer = Producer(BusConfig(bootstrap, client_id="stop-test"))
        await producer.start()
        await (await producer.send("stop-test", b"delivered"))
        broker.send_signal(signal.SIGKILL)
        broker.wait()
        await asyncio.sleep(0.2)  # the producer notices its connection is gone
        pending = await producer.send("stop-test", b"never delivered")
        await producer.stop()
    finally:
        if broker.poll() is None:
            broker.kill()
    assert pending.done()
    error = pending.exception()
    assert isinstance(error, KafkaConnectionError) and "producer stopped" in str(error)


async def test_a_consumer_loop_stops_when_its_last_commit_cannot_land(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    broker = start_broker("127.0.0.1", port, tmp_path / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    topic = TopicSpec("stop-loop", 2, key="any", purpose="test", contracts=())
    handled: list[int] = []
    all_handled = asyncio.Event()

    async def handler(record: Record) -> None:
        handled.append(record.offset)
        if len(handled) == 3:
            all_handled.set()

    try:
        ensure_topics(bootstrap, [topic, DLQ], replication_factor=1)
        bus = BusConfig(bootstrap, client_id="stop-test", signer=None)
        async with Producer(bus) as producer:
            # No periodic commits: what the loop handled is still uncommitted at the stop.
            config = ConsumerConfig([topic.name], "stop-loop", "test", commit_interval_s=30)
            loop = ConsumerLoop(bus, config, handler, producer)
            task = asyncio.create_task(loop.run())
            for i in range(3):
                await (await producer.send(topic.name, b"x", partition=i % 2))
            await all_handled.wait()
            broker.send_signal(signal.SIGKILL)
            broker.wait()
            await asyncio.sleep(1)  # its clients notice the broker is gone
            loop.stop()
            done, _ = await asyncio.wait({task}, timeout=120)  # aiokafka alone: forever
    finally:
        if broker.poll() is None:
            broker.kill()
    assert task in done and task.exception() is None  # stopped, and not as cancelled
    assert "last commit not acknowledged" in caplog.text
