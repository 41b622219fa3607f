"""Record -> rows / features / dead letters, with one `process` span per record (no IO)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from llmops.config import Settings
from llmops.kafka.record import Record
from llmops.telemetry.propagation import header_value
from schemas import (
    ChatMessage,
    DeadLetter,
    InferenceResult,
    PromptRef,
    PromptRequest,
    Timings,
    Usage,
)
from streams.features import ResponseFeatures
from streams.isolate import Unstorable
from streams.records import Batch, Converter
from streams.worker import MetricsWorker, WorkerOptions, build_worker
from tests.signing_kit import signed_headers
from tests.telemetry_kit import memory_tracer_provider

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01".encode()


@pytest.fixture
def traced() -> Iterator[tuple[MetricsWorker, InMemorySpanExporter]]:
    worker = build_worker(
        Settings(
            kafka_bootstrap_servers="127.0.0.1:1",
            clickhouse_url="http://127.0.0.1:1/none",
            max_message_bytes=2048,
        ),
        WorkerOptions(app_id="unit-streams"),
    )
    provider, exporter = memory_tracer_provider()
    tracer = provider.get_tracer("test")
    for sink in worker.sinks.values():
        sink.converter.tracer = tracer
    yield worker, exporter
    provider.shutdown()


def record(topic: str, value: bytes, offset: int = 42, key: bytes | None = b"k") -> Record:
    return Record(
        topic=topic,
        partition=3,
        offset=offset,
        key=key,
        value=value,
        # Results are signed by our services (the worker verifies them); the rest are not.
        headers=signed_headers(topic, key, value, "InferenceResult", [("traceparent", TRACEPARENT)])
        if topic == "llm.responses"
        else [("traceparent", TRACEPARENT), ("content-type", b"application/json")],
        timestamp_ms=1_700_000_000_000,
    )


def result() -> InferenceResult:
    return InferenceResult(
        request_id="req-1",
        text="four",
        finish_reason="stop",
        usage=Usage(input_tokens=7, output_tokens=2),
        timings=Timings(ttft_ms=30.0, total_ms=50.0),
        pool="cpu",
        model="gemma",
        prompt_name="greet",
        prompt_version=2,
        variant="a",
    )


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


def dead_letter_of(batch: Batch) -> DeadLetter:
    [out] = batch.outgoing
    assert out.topic == "llm.dlq"
    return DeadLetter.from_bytes(out.value)


def test_a_response_becomes_a_row_and_a_features_record(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, _ = traced
    payload = result().to_bytes()
    batch = worker.sinks["llm.responses"].convert([record("llm.responses", payload)])
    [row] = batch.rows
    assert row["request_id"] == "req-1"
    assert row["payload_size"] == len(payload)
    [out] = batch.outgoing
    assert out.topic == "unit-streams-response-features"
    assert out.key == b"greet|2|a|cpu|gemma"
    features = ResponseFeatures.from_bytes(out.value)
    assert (features.request_id, features.output_tokens, features.latency_ms) == ("req-1", 2, 50.0)
    assert batch.rejected == 0
    assert len(batch.contexts) == 1


def test_the_process_span_is_the_child_of_the_producer(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, exporter = traced
    batch = worker.sinks["llm.responses"].convert([record("llm.responses", result().to_bytes())])
    span = only_span(exporter)
    assert span.name == "process llm.responses"
    assert span.kind == SpanKind.CONSUMER
    assert span.context is not None and span.parent is not None
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    attrs = dict(span.attributes or {})
    assert attrs["messaging.system"] == "kafka"
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.destination.name"] == "llm.responses"
    assert attrs["messaging.destination.partition.id"] == "3"
    assert attrs["messaging.kafka.offset"] == 42
    assert attrs["messaging.consumer.group.name"] == "unit-streams"
    assert attrs["gen_ai.request.model"] == "gemma"
    assert attrs["gen_ai.usage.input_tokens"] == 7
    assert attrs["gen_ai.usage.output_tokens"] == 2
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)  # type: ignore[arg-type]
    # The features record carries the process span onward.
    traceparent = header_value(batch.outgoing[0].headers, "traceparent")
    assert traceparent == f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"


def test_a_request_becomes_a_row(traced: tuple[MetricsWorker, InMemorySpanExporter]) -> None:
    worker, exporter = traced
    request = PromptRequest(
        request_id="req-2",
        prompt=PromptRef(name="greet", label="prod", variables={"name": "Ada"}),
        model="gemma",
    )
    batch = worker.sinks["llm.requests"].convert([record("llm.requests", request.to_bytes())])
    [row] = batch.rows
    assert (row["request_id"], row["prompt_name"], row["prompt_label"]) == (
        "req-2",
        "greet",
        "prod",
    )
    assert batch.outgoing == []
    assert dict(only_span(exporter).attributes or {})["gen_ai.request.model"] == "gemma"


def test_not_json_goes_to_the_dead_letter_topic(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, exporter = traced
    batch = worker.sinks["llm.responses"].convert(
        [record("llm.responses", b"\x00not json", offset=7)]
    )
    assert batch.rows == []
    assert batch.rejected == 1
    assert batch.outgoing[0].key == b"llm.responses"  # llm.dlq is keyed by source topic
    letter = dead_letter_of(batch)
    assert letter.kind == "not_json"
    assert letter.service == "streams"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "llm.responses",
        3,
        7,
    )
    assert base64.b64decode(letter.payload_b64) == b"\x00not json"
    assert letter.headers["traceparent"] == TRACEPARENT.decode()
    span = only_span(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "not_json"


def test_schema_invalid_is_named_with_the_fields(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, _ = traced
    payload = json.dumps({"request_id": "req-3", "finish_reason": "nope"}).encode()
    letter = dead_letter_of(
        worker.sinks["llm.responses"].convert([record("llm.responses", payload)])
    )
    assert letter.kind == "schema_invalid"
    assert "finish_reason" in letter.reason
    assert letter.request_id == "req-3"


def test_oversized_input_is_refused_before_decoding(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, _ = traced
    big = result().model_copy(update={"text": "x" * 4000}).to_bytes()
    letter = dead_letter_of(worker.sinks["llm.responses"].convert([record("llm.responses", big)]))
    assert letter.kind == "oversized"
    assert letter.payload_size == len(big)


def skipped(kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "llmops_records_skipped_total",
        {"service": "streams", "topic": "llm.requests", "kind": kind},
    )
    return value or 0.0


def test_bad_requests_are_skipped_and_counted_not_dead_lettered(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    """The router dead-letters what it cannot decode on llm.requests; a second dead letter
    from this worker would count every bad request twice."""
    worker, exporter = traced
    before = skipped("schema_invalid"), skipped("oversized"), skipped("not_json")
    invalid = json.dumps({"request_id": "req-3", "reply_to": "app1", "messages": []}).encode()
    big = PromptRequest(messages=[ChatMessage(role="user", content="x" * 4000)]).to_bytes()
    good = PromptRequest(request_id="req-4", prompt=PromptRef(name="p")).to_bytes()
    batch = worker.sinks["llm.requests"].convert(
        [
            record("llm.requests", invalid, offset=1),
            record("llm.requests", big, offset=2),
            record("llm.requests", b"{not json", offset=3),
            record("llm.requests", good, offset=4),
        ]
    )
    assert batch.outgoing == []
    assert [r["request_id"] for r in batch.rows] == ["req-4"]
    assert batch.rejected == 3
    after = skipped("schema_invalid"), skipped("oversized"), skipped("not_json")
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]
    errors = [s for s in exporter.get_finished_spans() if s.status.status_code == StatusCode.ERROR]
    assert len(errors) == 3


def test_a_failing_handler_dead_letters_that_record_only(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, _ = traced

    def handle(value: InferenceResult, rec: Record, span: object, batch: Batch) -> None:
        if rec.offset == 1:
            raise RuntimeError("boom")
        batch.rows.append({"request_id": value.request_id})

    converter: Converter = worker.sinks["llm.responses"].converter
    payload = result().to_bytes()
    batch = converter.convert(
        [record("llm.responses", payload, offset=o) for o in range(3)], InferenceResult, handle
    )
    assert [r["request_id"] for r in batch.rows] == ["req-1", "req-1"]
    letter = dead_letter_of(batch)
    assert (letter.kind, letter.source_offset) == ("processing_error", 1)
    assert "RuntimeError: boom" in letter.reason


def test_a_bad_dead_letter_is_skipped_not_looped(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, exporter = traced
    good = DeadLetter(
        kind="not_json",
        reason="x",
        service="router",
        source_topic="llm.requests",
        source_partition=0,
        source_offset=5,
        payload_b64="",
        payload_size=0,
    )
    batch = worker.sinks["llm.dlq"].convert(
        [record("llm.dlq", b"garbage", offset=0), record("llm.dlq", good.to_bytes(), offset=1)]
    )
    assert batch.outgoing == []  # nothing goes back to llm.dlq
    assert batch.rejected == 1
    assert [r["source_offset"] for r in batch.rows] == [5]
    assert len(exporter.get_finished_spans()) == 2


def test_rows_keep_the_order_of_records(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, _ = traced
    records = [
        record(
            "llm.requests",
            PromptRequest(request_id=f"r{i}", prompt=PromptRef(name="p")).to_bytes(),
            offset=i,
        )
        for i in range(5)
    ]
    batch = worker.sinks["llm.requests"].convert(records)
    assert [r["request_id"] for r in batch.rows] == [f"r{i}" for i in range(5)]
    assert len(batch.contexts) == 5


def test_a_row_the_store_refused_is_dead_lettered_and_its_features_withheld(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, _ = traced
    payloads = [result().model_copy(update={"request_id": f"req-{i}"}).to_bytes() for i in range(3)]
    batch = worker.sinks["llm.responses"].convert(
        [record("llm.responses", p, offset=10 + i) for i, p in enumerate(payloads)]
    )
    refused = [Unstorable(1, batch.rows[1], "OverflowError: int too big to convert")]
    outgoing = worker.sinks["llm.responses"].converter.refused(batch, refused)
    features = [ResponseFeatures.from_bytes(o.value).request_id for o in outgoing[:-1]]
    assert features == ["req-0", "req-2"]  # req-1's would count a row that is not stored
    letter = DeadLetter.from_bytes(outgoing[-1].value)
    assert (outgoing[-1].topic, outgoing[-1].key) == ("llm.dlq", b"llm.responses")
    assert (letter.kind, letter.service) == ("unstorable", "streams")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "llm.responses",
        3,
        11,
    )
    assert base64.b64decode(letter.payload_b64) == payloads[1]
    assert "OverflowError: int too big to convert" in letter.reason
    assert worker.sinks["llm.responses"].converter.refused(batch, []) == batch.outgoing


def test_a_dead_letter_the_store_refused_is_counted_not_looped(
    traced: tuple[MetricsWorker, InMemorySpanExporter],
) -> None:
    worker, _ = traced
    good = DeadLetter(
        kind="not_json",
        reason="x",
        service="router",
        source_topic="llm.requests",
        source_partition=0,
        source_offset=5,
        payload_b64="",
        payload_size=0,
    )
    batch = worker.sinks["llm.dlq"].convert([record("llm.dlq", good.to_bytes(), offset=3)])
    key = {"service": "streams", "topic": "llm.dlq", "kind": "unstorable"}
    before = REGISTRY.get_sample_value("llmops_records_skipped_total", key) or 0.0
    assert (
        worker.sinks["llm.dlq"].converter.refused(batch, [Unstorable(0, batch.rows[0], "no")]) == []
    )
    assert REGISTRY.get_sample_value("llmops_records_skipped_total", key) == before + 1
