"""The windows agent on packed features records: a record is acked once, when every window
its responses fell into has been emitted (or dropped), never while one still waits (no IO:
emitting is recorded instead of inserted and published)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from faust.events import Event
from faust.types import TP, EventT, StreamT
from faust.types.tuples import ConsumerMessage
from prometheus_client import REGISTRY

from llmops.config import Settings
from schemas.topics import EVENT_TYPE_HEADER
from streams.agents.windows import WindowsAgent
from streams.features import ResponseFeatures, ResponseFeaturesBatch
from streams.windows import DueWindow
from streams.worker import WorkerOptions, build_worker

SETTINGS = Settings(
    kafka_bootstrap_servers="127.0.0.1:1,127.0.0.1:2",
    clickhouse_url="http://127.0.0.1:1/none",
    metrics_window_s=10,
    data_dir=Path("/tmp/llmops-unit"),
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES_TOPIC = "unit-streams-response-features"


class Harness:
    """The agent, with its emissions and acks recorded."""

    def __init__(self) -> None:
        self.agent = build_worker(
            SETTINGS, WorkerOptions(app_id="unit-streams", window_grace_s=0)
        ).windows
        self.emitted: list[list[str]] = []
        self.acked: list[EventT[bytes]] = []
        harness = self

        class Stream:
            async def ack(self, e: EventT[bytes]) -> bool:
                harness.acked.append(e)
                return True

        async def emit(due: Sequence[DueWindow], held: Sequence[EventT[bytes]]) -> None:
            self.emitted.append([f"{w.key.start_ms}:{w.key.group[2]}" for w in due])

        self.agent._stream = cast(StreamT[bytes], Stream())
        self.agent._emit = emit  # type: ignore[method-assign]

    def tick(self, seconds: float) -> None:
        asyncio.run(self.agent.emit_due(T0.timestamp() + seconds))


@pytest.fixture
def h() -> Harness:
    return Harness()


def member(rid: str, seconds: float, variant: str = "a") -> ResponseFeatures:
    return ResponseFeatures(
        request_id=rid, ts=T0 + timedelta(seconds=seconds), variant=variant, finish_reason="stop"
    )


def packed_event(
    agent: WindowsAgent,
    members: Sequence[ResponseFeatures],
    partition: int = 0,
    offset: int = 0,
    headers: bool = True,
) -> Event:
    value = ResponseFeaturesBatch(features=list(members)).to_bytes()
    kept = [(EVENT_TYPE_HEADER, b"ResponseFeaturesBatch")] if headers else []
    message = ConsumerMessage(
        FEATURES_TOPIC, partition, offset, 0.0, 0, kept, None, value, None, generation_id=0
    )
    message.incref()
    return Event(agent.app, None, value, {}, message)


def skipped_count(kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "llmops_records_skipped_total",
        {"service": "streams", "topic": FEATURES_TOPIC, "kind": kind},
    )
    return value or 0.0


def test_a_packed_record_counts_every_member(h: Harness) -> None:
    event = packed_event(h.agent, [member(f"r{i}", 1) for i in range(5)])
    h.agent.add_features([event], T0.timestamp())
    [(_, window)] = h.agent.accumulator.due(T0.timestamp() + 60)
    assert window.requests == 5


def test_a_record_spanning_two_windows_is_acked_once_both_are_emitted(h: Harness) -> None:
    event = packed_event(h.agent, [member("r1", 1), member("r2", 11), member("r3", 2)])
    h.agent.add_features([event], T0.timestamp())
    h.tick(15)  # the first window closed, the second not yet
    assert len(h.emitted) == 1 and h.acked == []
    h.tick(25)
    assert len(h.emitted) == 2 and h.acked == [event]
    h.tick(35)  # nothing more to emit or ack: never acked twice
    assert h.acked == [event]


def test_a_window_re_emitted_acks_only_its_new_records(h: Harness) -> None:
    first = packed_event(h.agent, [member("r1", 1)], offset=0)
    h.agent.add_features([first], T0.timestamp())
    h.tick(15)
    assert h.acked == [first]
    late = packed_event(h.agent, [member("r2", 2)], offset=1)
    h.agent.add_features([late], T0.timestamp() + 16)
    h.tick(17)
    assert h.acked == [first, late]


def test_members_already_counted_wait_for_nothing(h: Harness) -> None:
    first = packed_event(h.agent, [member("r1", 1), member("r2", 11)], offset=0)
    again = packed_event(h.agent, [member("r1", 1), member("r2", 11)], offset=1)
    partly = packed_event(h.agent, [member("r1", 1), member("r3", 12)], offset=2)
    h.agent.add_features([first, again, partly], T0.timestamp())
    assert h.acked == [] and again.message.acked  # acked at once: nothing new in it
    h.tick(15)
    assert h.acked == []  # `first` still waits on the second window, `partly` too
    h.tick(25)
    assert sorted(e.message.offset for e in h.acked) == [0, 2]


def test_revoked_records_are_never_acked_and_others_are(h: Harness) -> None:
    lost = packed_event(h.agent, [member("r1", 1, "a"), member("r2", 11, "a")], partition=0)
    kept = packed_event(h.agent, [member("r3", 1, "b")], partition=1)
    h.agent.add_features([lost, kept], T0.timestamp())
    h.tick(15)
    assert h.acked == [kept]  # `lost` waits on its second window
    h.agent.on_partitions_revoked(h.agent.app, {TP(FEATURES_TOPIC, 0)}, signal=None)
    h.tick(25)
    h.tick(60)
    assert h.acked == [kept]  # its windows dropped: the new owner replays and recounts it
    assert h.agent._waiting == {}
    # Replayed after the rebalance (a new event for the same offset): counted and acked.
    again = packed_event(h.agent, [member("r1", 1, "a"), member("r2", 11, "a")], partition=0)
    h.agent.add_features([again], T0.timestamp() + 60)
    assert h.agent.accumulator.needs_seed() != []  # closed windows: completed from storage


def test_a_packed_record_without_headers_is_known_by_its_shape(h: Harness) -> None:
    event = packed_event(h.agent, [member("r1", 1), member("r2", 1)], headers=False)
    h.agent.add_features([event], T0.timestamp())
    [(_, window)] = h.agent.accumulator.due(T0.timestamp() + 60)
    assert window.requests == 2 and not event.message.acked


def test_a_bad_packed_record_is_skipped_and_counted(h: Harness) -> None:
    not_json = packed_event(h.agent, [member("r1", 1)], offset=0)
    not_json.message.value = b'{"features":['
    hostile = packed_event(h.agent, [member("r2", 1), member("r3", 1)], offset=1)
    doc = json.loads(hostile.message.value or b"")
    doc["features"][1]["prompt_version"] = 24321736945397720  # past the contract's bound
    hostile.message.value = json.dumps(doc).encode()
    empty = packed_event(h.agent, [member("r4", 1)], offset=2)
    empty.message.value = b'{"features":[]}'
    before = skipped_count("schema_invalid") + skipped_count("not_json")
    h.agent.add_features([not_json, hostile, empty], T0.timestamp())
    assert len(h.agent.accumulator) == 0  # no member of a bad record is counted
    assert all(e.message.acked for e in (not_json, hostile, empty))
    assert skipped_count("schema_invalid") + skipped_count("not_json") == before + 3
