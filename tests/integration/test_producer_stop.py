"""A producer stopped while its broker is gone: it gives up on what cannot be delivered
instead of holding the process for aiokafka's whole request timeout (40 s), and what it gave
up on fails with a clear error. The real broker (one of this test's own, to kill)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from llmops.broker import start_broker
from llmops.bus import BusConfig, Producer
from llmops.procs import free_port

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
