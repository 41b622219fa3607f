"""Delivery.publish: a record the producer could never send is dropped (logged, counted),
never retried for ever; everything else is sent (no IO: the producer records its sends)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from llmops.config import Settings
from streams.agents.delivery import Delivery
from streams.records import RECORD_OVERHEAD_BYTES, Outgoing, record_size
from streams.worker import WorkerOptions, build_worker

SETTINGS = Settings(
    kafka_bootstrap_servers="127.0.0.1:1",
    clickhouse_url="http://127.0.0.1:1/none",
    data_dir=Path("/tmp/llmops-unit"),
)


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, key: Any, value: bytes, *_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def skipped(topic: str) -> float:
    value = REGISTRY.get_sample_value(
        "llmops_records_skipped_total",
        {"service": "streams", "topic": topic, "kind": "too_large"},
    )
    return value or 0.0


def test_record_size_counts_key_value_headers_and_framing() -> None:
    out = Outgoing("t", b"key", b"v" * 10, [("h", b"12")])
    assert record_size(out) == 10 + 3 + 3 + RECORD_OVERHEAD_BYTES


def test_a_record_larger_than_the_producer_sends_is_dropped_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = build_worker(SETTINGS, WorkerOptions(app_id="unit-delivery"))
    delivery = Delivery(worker.app, 10, 0.1)
    producer = RecordingProducer()
    worker.app._producer = producer  # type: ignore[assignment]
    limit = int(worker.app.conf.producer_max_request_size)
    small = Outgoing("unit.small", b"k", b"x" * 100, [])
    huge = Outgoing("unit.huge", b"k", b"x" * limit, [])
    before = skipped("unit.huge")
    with caplog.at_level(logging.ERROR):
        asyncio.run(asyncio.wait_for(delivery.publish([small, huge, small]), 5))
    assert producer.sent == [("unit.small", small.value), ("unit.small", small.value)]
    assert skipped("unit.huge") == before + 1
    assert any("larger than the producer sends" in r.getMessage() for r in caplog.records)
