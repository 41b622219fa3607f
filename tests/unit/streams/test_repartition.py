"""Packing the features records of a sink batch: one record per window group (no IO)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from llmops.config import Settings
from schemas import InferenceResult, Timings, Usage
from schemas.topics import EVENT_TYPE_HEADER
from streams.features import ResponseFeatures, ResponseFeaturesBatch, group_key_text
from streams.isolate import Unstorable
from streams.records import Outgoing
from streams.repartition import (
    PACKED_EVENT_TYPE,
    is_packed,
    looks_packed,
    pack_features,
)
from streams.worker import WorkerOptions, build_worker
from tests.unit.streams.test_records import record

TOPIC = "app-response-features"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def features(rid: str, variant: str = "a") -> Outgoing:
    f = ResponseFeatures(request_id=rid, ts=T0, variant=variant, finish_reason="stop")
    headers = [
        ("content-type", b"application/json"),
        (EVENT_TYPE_HEADER, b"ResponseFeatures"),
        ("traceparent", f"00-{'0' * 31}1-{rid.rjust(16, '0')}-01".encode()),
    ]
    return Outgoing(TOPIC, group_key_text(f.group).encode(), f.to_bytes(), headers)


def letter(n: int) -> Outgoing:
    return Outgoing("llm.dlq", b"llm.responses", f'{{"n":{n}}}'.encode(), [])


def members(out: Outgoing) -> list[str]:
    return [f.request_id for f in ResponseFeaturesBatch.from_bytes(out.value).features]


def header(out: Outgoing, name: str) -> bytes:
    [value] = [v for n, v in out.headers if n == name]
    return value


def test_features_are_packed_per_key_in_order_in_place_of_their_first_member() -> None:
    outgoing = [features("1", "a"), letter(1), features("2", "b"), features("3", "a"), letter(2)]
    packed = pack_features(outgoing, TOPIC, 1_048_576)
    assert [o.topic for o in packed] == [TOPIC, "llm.dlq", TOPIC, "llm.dlq"]
    assert members(packed[0]) == ["1", "3"] and members(packed[2]) == ["2"]
    assert packed[0].key == outgoing[0].key and packed[2].key == outgoing[2].key
    assert packed[1] is outgoing[1] and packed[3] is outgoing[4]  # others unchanged


def test_a_packed_record_carries_its_first_members_trace_and_the_packed_type() -> None:
    [packed] = pack_features([features("7"), features("8")], TOPIC, 1_048_576)
    assert header(packed, EVENT_TYPE_HEADER) == PACKED_EVENT_TYPE.encode()
    assert header(packed, "traceparent") == header(features("7"), "traceparent")
    assert is_packed(packed.headers) is True
    assert is_packed(features("7").headers) is False
    assert is_packed([]) is None
    assert looks_packed(packed.value) and not looks_packed(features("7").value)


def test_packed_records_are_split_below_the_size_limit() -> None:
    outgoing = [features(str(i)) for i in range(40)]
    one = len(outgoing[0].value)
    limit = 2048 + 4 * one
    packed = pack_features(outgoing, TOPIC, limit)
    assert len(packed) > 1
    for out in packed:
        size = len(out.value) + len(out.key or b"") + sum(len(n) + len(v) for n, v in out.headers)
        assert size <= limit
    assert [rid for out in packed for rid in members(out)] == [str(i) for i in range(40)]
    # Each split record carries the context of its own first member.
    firsts = [members(out)[0] for out in packed]
    assert [header(o, "traceparent") for o in packed] == [
        header(features(rid), "traceparent") for rid in firsts
    ]


def test_packed_records_are_split_at_the_member_bound() -> None:
    packed = pack_features([features(str(i)) for i in range(7)], TOPIC, 1_048_576, max_members=3)
    assert [members(o) for o in packed] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]


def test_a_member_larger_than_the_limit_alone_is_packed_alone() -> None:
    packed = pack_features([features("1"), features("2")], TOPIC, 64)
    assert [members(o) for o in packed] == [["1"], ["2"]]


def test_nothing_to_pack_leaves_the_records_as_they_are() -> None:
    assert pack_features([], TOPIC, 1024) == []
    assert pack_features([letter(1)], TOPIC, 1024) == [letter(1)]


def test_the_refused_rows_features_are_withheld_from_the_packed_records() -> None:
    worker = build_worker(
        Settings(
            kafka_bootstrap_servers="127.0.0.1:1",
            clickhouse_url="http://127.0.0.1:1/none",
            data_dir=Path("/tmp/llmops-unit"),
        ),
        WorkerOptions(app_id="unit-streams"),
    )
    sink = worker.sinks["llm.responses"]
    results = [
        InferenceResult(
            request_id=f"req-{i}",
            text="four",
            finish_reason="stop",
            usage=Usage(input_tokens=7, output_tokens=2),
            timings=Timings(ttft_ms=30.0, total_ms=50.0),
            prompt_name="greet",
            variant="ab"[i % 2],
        )
        for i in range(5)
    ]
    batch = sink.convert(
        [record("llm.responses", r.to_bytes(), offset=10 + i) for i, r in enumerate(results)]
    )
    refused = [Unstorable(2, batch.rows[2], "OverflowError: int too big to convert")]
    outgoing = sink.outgoing(batch, refused)
    topic = sink.context.features_topic
    packed = [o for o in outgoing if o.topic == topic]
    assert [members(o) for o in packed] == [["req-0", "req-4"], ["req-1", "req-3"]]
    assert [o.key for o in packed] == [b"greet|0|a||", b"greet|0|b||"]
    assert [o.topic for o in outgoing] == [topic, topic, "llm.dlq"]
    # Nothing refused: every response's features, still one record per group.
    assert [members(o) for o in sink.outgoing(batch, []) if o.topic == topic] == [
        ["req-0", "req-2", "req-4"],
        ["req-1", "req-3"],
    ]
