"""The windows agent's bookkeeping that decides acks: a features record is acked when its
window is emitted, dropped, or already counted (no IO)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from faust.events import Event
from faust.types import TP, EventT, StreamT
from faust.types.tuples import ConsumerMessage
from prometheus_client import REGISTRY

from llmops.config import Settings
from streams.agents.windows import WindowsAgent
from streams.features import ResponseFeatures
from streams.windows import WindowAccumulator
from streams.worker import WorkerOptions, build_worker

SETTINGS = Settings(
    kafka_bootstrap_servers="127.0.0.1:1,127.0.0.1:2",
    clickhouse_url="http://127.0.0.1:1/none",
    metrics_window_s=10,
    data_dir=Path("/tmp/llmops-unit"),
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES_TOPIC = "unit-streams-response-features"
LOGGER = "streams.agents.windows"


@pytest.fixture
def agent() -> WindowsAgent:
    return build_worker(SETTINGS, WorkerOptions(app_id="unit-streams", window_grace_s=0)).windows


def skipped_count(kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "llmops_records_skipped_total",
        {"service": "streams", "topic": FEATURES_TOPIC, "kind": kind},
    )
    return value or 0.0


def features_event(
    agent: WindowsAgent, rid: str, partition: int, variant: str, offset: int, generation: int = 0
) -> Event:
    features = ResponseFeatures(
        request_id=rid,
        ts=T0 + timedelta(seconds=1),
        variant=variant,
        finish_reason="stop",
    )
    value = features.to_bytes()
    message = ConsumerMessage(
        FEATURES_TOPIC, partition, offset, 0.0, 0, [], None, value, None, generation_id=generation
    )
    message.incref()
    return Event(agent.app, None, value, {}, message)


def test_counted_features_wait_for_their_window(agent: WindowsAgent) -> None:
    events = [features_event(agent, f"r{i}", 0, "a", i) for i in range(3)]
    agent.add_features(events, T0.timestamp())
    assert len(agent.accumulator) == 1
    assert not any(e.message.acked for e in events)
    assert agent.accumulator.pending() != []


def test_a_duplicate_is_acked_at_once(agent: WindowsAgent) -> None:
    first = features_event(agent, "r1", 0, "a", 0)
    again = features_event(agent, "r1", 0, "a", 1)
    agent.add_features([first, again], T0.timestamp())
    assert (first.message.acked, again.message.acked) == (False, True)


def test_records_fetched_before_a_rebalance_are_ignored(agent: WindowsAgent) -> None:
    stale = features_event(agent, "r1", 0, "a", 0, generation=agent.app.consumer_generation_id + 1)
    agent.add_features([stale], T0.timestamp())
    assert len(agent.accumulator) == 0
    assert not stale.message.acked  # it is fetched again after the seek


def test_an_invalid_features_record_is_skipped(agent: WindowsAgent) -> None:
    bad = features_event(agent, "r1", 0, "a", 0)
    bad.message.value = b"{}"
    agent.add_features([bad], T0.timestamp())
    assert len(agent.accumulator) == 0
    assert bad.message.acked


def test_hostile_features_are_skipped_counted_and_logged_once(
    agent: WindowsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    # From the consumer fuzz test: in-range JSON, past the bounds a window can hold.
    hostile = []
    for offset in range(3):
        event = features_event(agent, f"r{offset}", 0, "a", offset)
        doc = {**json.loads(event.message.value), "prompt_version": 24321736945397720}
        event.message.value = json.dumps({**doc, "cost_usd": 1.26e308}).encode()
        hostile.append(event)
    before = skipped_count("schema_invalid")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        agent.add_features(hostile, T0.timestamp())
    assert len(agent.accumulator) == 0
    assert all(e.message.acked for e in hostile)
    assert skipped_count("schema_invalid") == before + 3
    lines = [r for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert "schema_invalid" in lines[0].getMessage() and "+" not in lines[0].getMessage()


def test_an_unbuildable_window_is_dropped_and_its_records_acked(
    agent: WindowsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    # Settings cap windows at an hour; two-day ones make a window that cannot be built: the
    # one holding the last valid time ends past the stored range.
    agent.accumulator = WindowAccumulator(2 * 86_400)
    event = features_event(agent, "r1", 0, "a", 0)
    doc = {**json.loads(event.message.value), "ts": "2299-12-31T00:00:00Z"}
    event.message.value = json.dumps(doc).encode()
    agent.add_features([event], T0.timestamp())
    assert len(agent.accumulator) == 1 and not event.message.acked
    acked: list[EventT[bytes]] = []

    class Stream:
        async def ack(self, e: EventT[bytes]) -> bool:
            acked.append(e)
            return True

    agent._stream = cast(StreamT[bytes], Stream())
    assert agent.accumulator.due(datetime(2300, 1, 3, tzinfo=UTC).timestamp()) == []
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        asyncio.run(agent._drop_unbuildable())
    assert acked == [event]
    assert agent.accumulator.pending() == []
    assert [r.exc_info for r in caplog.records if "unbuildable_window" in r.getMessage()] == [None]


def test_revoked_partitions_lose_their_windows(agent: WindowsAgent) -> None:
    agent.add_features(
        [features_event(agent, "r1", 0, "a", 0), features_event(agent, "r2", 1, "b", 0)],
        T0.timestamp(),
    )
    assert len(agent.accumulator) == 2
    agent.on_partitions_revoked(agent.app, {TP(FEATURES_TOPIC, 0)}, signal=None)
    [(_, window)] = agent.accumulator.due(T0.timestamp() + 60)
    assert window.variant == "b"
