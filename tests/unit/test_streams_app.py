"""The faust app's configuration and the window bookkeeping that decides acks (no IO)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import faust
import pytest
from faust.events import Event
from faust.types import TP
from faust.types.tuples import ConsumerMessage

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


def test_revoked_partitions_lose_their_windows(worker: MetricsWorker) -> None:
    worker.add_features(
        [features_event(worker, "r1", 0, "a", 0), features_event(worker, "r2", 1, "b", 0)],
        T0.timestamp(),
    )
    assert len(worker.windows) == 2
    worker.on_partitions_revoked(worker.app, {TP(FEATURES_TOPIC, 0)}, signal=None)
    [(_, window)] = worker.windows.due(T0.timestamp() + 60)
    assert window.variant == "b"
