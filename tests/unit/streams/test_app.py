"""The faust app's configuration and the window bookkeeping that decides acks (no IO)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import faust
import pytest
from faust.events import Event
from faust.types import TP, EventT, StreamT
from faust.types.tuples import ConsumerMessage
from prometheus_client import REGISTRY

from llmops.config import Settings
from streams.app import (
    FEATURES_PARTITIONS,
    MetricsWorker,
    WorkerOptions,
    build_worker,
    create_app,
    faust_settings,
    topics_needed,
)
from streams.features import ResponseFeatures
from streams.windows import WindowAccumulator

SETTINGS = Settings(
    kafka_bootstrap_servers="127.0.0.1:1,127.0.0.1:2",
    clickhouse_url="http://127.0.0.1:1/none",
    metrics_window_s=10,
    data_dir=Path("/tmp/llmops-unit"),
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES_TOPIC = "unit-streams-response-features"


def test_faust_settings_follow_the_tansu_notes() -> None:
    conf = faust_settings(SETTINGS, WorkerOptions())
    assert conf["broker"] == ["kafka://127.0.0.1:1", "kafka://127.0.0.1:2"]
    assert conf["broker_session_timeout"] == 6
    assert conf["broker_heartbeat_interval"] == 1
    assert conf["consumer_auto_offset_reset"] == "earliest"
    assert conf["value_serializer"] == conf["key_serializer"] == "raw"
    assert conf["stream_wait_empty"] is False
    assert conf["web_enabled"] is False
    assert conf["datadir"] == "/tmp/llmops-unit/faust"
    assert "processing_guarantee" not in conf  # exactly_once fails on Tansu


def test_the_web_server_only_ever_binds_loopback() -> None:
    conf = faust_settings(SETTINGS, WorkerOptions(web_port=16066, data_dir=Path("/x")))
    assert (conf["web_enabled"], conf["web_port"], conf["web_bind"]) == (True, 16066, "127.0.0.1")
    assert conf["datadir"] == "/x"


def test_the_app_is_configured_from_settings() -> None:
    app = create_app(SETTINGS, WorkerOptions(app_id="unit-streams"))
    assert isinstance(app, faust.App)
    assert app.conf.id == "unit-streams"
    assert app.conf.web_enabled is False
    assert app.conf.broker_session_timeout == 6
    assert len(app.agents) == 4


def test_topics_needed_include_the_repartition_topic() -> None:
    specs = {s.name: s.partitions for s in topics_needed(WorkerOptions(app_id="a1"))}
    assert specs == {
        "llm.requests": 12,
        "llm.responses": 12,
        "llm.dlq": 3,
        "llm.metrics": 6,
        "a1-response-features": FEATURES_PARTITIONS,
    }


# --- windows hold their acks -------------------------------------------------------------


@pytest.fixture
def worker() -> MetricsWorker:
    return build_worker(SETTINGS, WorkerOptions(app_id="unit-streams", window_grace_s=0))


def skipped_count(kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "llmops_records_skipped_total",
        {"service": "streams", "topic": FEATURES_TOPIC, "kind": kind},
    )
    return value or 0.0


def features_event(
    worker: MetricsWorker, rid: str, partition: int, variant: str, offset: int, generation: int = 0
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
    return Event(worker.app, None, value, {}, message)


def test_counted_features_wait_for_their_window(worker: MetricsWorker) -> None:
    events = [features_event(worker, f"r{i}", 0, "a", i) for i in range(3)]
    worker.add_features(events, T0.timestamp())
    assert len(worker.windows) == 1
    assert not any(e.message.acked for e in events)
    assert worker.windows.pending() != []


def test_a_duplicate_is_acked_at_once(worker: MetricsWorker) -> None:
    first = features_event(worker, "r1", 0, "a", 0)
    again = features_event(worker, "r1", 0, "a", 1)
    worker.add_features([first, again], T0.timestamp())
    assert (first.message.acked, again.message.acked) == (False, True)


def test_records_fetched_before_a_rebalance_are_ignored(worker: MetricsWorker) -> None:
    stale = features_event(
        worker, "r1", 0, "a", 0, generation=worker.app.consumer_generation_id + 1
    )
    worker.add_features([stale], T0.timestamp())
    assert len(worker.windows) == 0
    assert not stale.message.acked  # it is fetched again after the seek


def test_an_invalid_features_record_is_skipped(worker: MetricsWorker) -> None:
    bad = features_event(worker, "r1", 0, "a", 0)
    bad.message.value = b"{}"
    worker.add_features([bad], T0.timestamp())
    assert len(worker.windows) == 0
    assert bad.message.acked


def test_hostile_features_are_skipped_counted_and_logged_once(
    worker: MetricsWorker, caplog: pytest.LogCaptureFixture
) -> None:
    # From the consumer fuzz test: in-range JSON, past the bounds a window can hold.
    hostile = []
    for offset in range(3):
        event = features_event(worker, f"r{offset}", 0, "a", offset)
        doc = {**json.loads(event.message.value), "prompt_version": 24321736945397720}
        event.message.value = json.dumps({**doc, "cost_usd": 1.26e308}).encode()
        hostile.append(event)
    before = skipped_count("schema_invalid")
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        worker.add_features(hostile, T0.timestamp())
    assert len(worker.windows) == 0
    assert all(e.message.acked for e in hostile)
    assert skipped_count("schema_invalid") == before + 3
    lines = [r for r in caplog.records if r.name == "streams.app"]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert "schema_invalid" in lines[0].getMessage() and "+" not in lines[0].getMessage()


def test_an_unbuildable_window_is_dropped_and_its_records_acked(
    worker: MetricsWorker, caplog: pytest.LogCaptureFixture
) -> None:
    # Settings cap windows at an hour; two-day ones make a window that cannot be built: the
    # one holding the last valid time ends past the stored range.
    worker.windows = WindowAccumulator(2 * 86_400)
    event = features_event(worker, "r1", 0, "a", 0)
    doc = {**json.loads(event.message.value), "ts": "2299-12-31T00:00:00Z"}
    event.message.value = json.dumps(doc).encode()
    worker.add_features([event], T0.timestamp())
    assert len(worker.windows) == 1 and not event.message.acked
    acked: list[EventT[bytes]] = []

    class Stream:
        async def ack(self, e: EventT[bytes]) -> bool:
            acked.append(e)
            return True

    worker._features_stream = cast(StreamT[bytes], Stream())
    assert worker.windows.due(datetime(2300, 1, 3, tzinfo=UTC).timestamp()) == []
    with caplog.at_level(logging.ERROR, logger="streams.app"):
        asyncio.run(worker._drop_unbuildable())
    assert acked == [event]
    assert worker.windows.pending() == []
    assert [r.exc_info for r in caplog.records if "unbuildable_window" in r.getMessage()] == [None]


def test_revoked_partitions_lose_their_windows(worker: MetricsWorker) -> None:
    worker.add_features(
        [features_event(worker, "r1", 0, "a", 0), features_event(worker, "r2", 1, "b", 0)],
        T0.timestamp(),
    )
    assert len(worker.windows) == 2
    worker.on_partitions_revoked(worker.app, {TP(FEATURES_TOPIC, 0)}, signal=None)
    [(_, window)] = worker.windows.due(T0.timestamp() + 60)
    assert window.variant == "b"
