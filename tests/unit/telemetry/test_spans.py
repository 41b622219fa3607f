"""Spans over Kafka hops: producer, consumer (child of the record's headers), batch (links)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmops.telemetry.propagation import extract_context, header_value, inject_context
from llmops.telemetry.spans import (
    batch_span,
    consumer_span,
    producer_headers,
    producer_span,
    record_failure,
    span_links,
    start_client_span,
)
from tests.telemetry_kit import memory_tracer_provider


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, exporter = memory_tracer_provider("unit")
    yield provider, exporter
    provider.shutdown()


# --- spans across Kafka headers ------------------------------------------------------------------


def test_propagation_round_trip(traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, _ = traced
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("producer") as span:
        headers = producer_headers([("content-type", b"application/json")])
        sent = span.get_span_context()
    assert header_value(headers, "content-type") == "application/json"
    assert header_value(headers, "traceparent") is not None
    received = trace.get_current_span(extract_context(headers)).get_span_context()
    assert received.trace_id == sent.trace_id
    assert received.span_id == sent.span_id
    assert received.is_remote


def test_no_context_outside_a_span() -> None:
    assert producer_headers() == []
    assert not trace.get_current_span(extract_context(None)).get_span_context().is_valid


def test_consumer_span_is_the_child_of_the_producer(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("app") as app_span:
        headers = inject_context([])
    parent = app_span.get_span_context()
    with consumer_span(
        tracer,
        "process llm.requests",
        headers,
        "llm.requests",
        2,
        17,
        key="user-1",
        consumer_group="router",
        attributes={"llmops.request_id": "r1"},
    ) as span:
        onward = producer_headers()
        assert trace.get_current_span() is span
    spans = {s.name: s for s in exporter.get_finished_spans()}
    process = spans["process llm.requests"]
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == parent.span_id
    assert process.context.trace_id == parent.trace_id
    assert process.attributes is not None
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.partition.id"] == "2"
    assert process.attributes["messaging.kafka.offset"] == 17
    assert process.attributes["messaging.consumer.group.name"] == "router"
    assert process.attributes["llmops.request_id"] == "r1"
    # What the consumer produces carries the consumer span, so the next hop joins the trace.
    nxt = trace.get_current_span(extract_context(onward)).get_span_context()
    assert (nxt.trace_id, nxt.span_id) == (parent.trace_id, process.context.span_id)


def test_consumer_span_without_headers_starts_a_trace(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    with consumer_span(provider.get_tracer("t"), "process t", [], "t", 0, 0):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


def test_consumer_span_records_an_error(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    with (
        pytest.raises(ValueError),
        consumer_span(provider.get_tracer("t"), "process t", None, "t", 0, 5),
    ):
        raise ValueError("bad record")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_producer_span(traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    with producer_span(provider.get_tracer("t"), "llm.responses", key="r1") as span:
        headers = producer_headers()
        ctx = span.get_span_context()
    (finished,) = exporter.get_finished_spans()
    assert finished.kind is SpanKind.PRODUCER
    assert finished.name == "send llm.responses"
    assert finished.attributes is not None
    assert finished.attributes["messaging.operation.type"] == "send"
    sent = trace.get_current_span(extract_context(headers)).get_span_context()
    assert sent.span_id == ctx.span_id


def test_batch_span_links_each_record(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("t")
    record_headers = []
    for i in range(3):
        with tracer.start_as_current_span(f"app-{i}"):
            record_headers.append(producer_headers())
    contexts = [extract_context(h) for h in record_headers]
    contexts.append(contexts[0])  # two records from the same producer span: one link
    contexts.append(extract_context([]))  # a record without trace context: no link
    with batch_span(tracer, "process llm.responses", contexts, topic="llm.responses"):
        pass
    finished = exporter.get_finished_spans()
    producers = [s for s in finished if s.name.startswith("app-")]
    (batch,) = [s for s in finished if s.name == "process llm.responses"]
    assert batch.parent is None
    assert batch.kind is SpanKind.CONSUMER
    assert [link.context.span_id for link in batch.links] == [p.context.span_id for p in producers]
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 5
    assert batch.attributes["messaging.destination.name"] == "llm.responses"


def test_span_links_skip_invalid_contexts() -> None:
    assert span_links([extract_context([]), extract_context([("traceparent", b"garbage")])]) == []


def test_client_span_outlives_its_start_and_records_a_failure(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    span = start_client_span(provider.get_tracer("t"), "chat m", {"llmops.request_id": "r1"})
    assert trace.get_current_span() is not span  # not current: its owner ends it later
    assert exporter.get_finished_spans() == ()
    record_failure(span, "timeout", "no reply within 30s")
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.kind is SpanKind.CLIENT
    assert finished.name == "chat m"
    assert finished.attributes is not None
    assert finished.attributes["llmops.request_id"] == "r1"
    assert finished.attributes["error.type"] == "timeout"
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "no reply within 30s"
