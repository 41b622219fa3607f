"""Telemetry setup from OTEL_* variables, attribute builders, and spans over Kafka headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as genai
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.trace import SpanKind, StatusCode

from llmops.telemetry.propagation import extract_context, header_value, inject_context
from llmops.telemetry.tracing import (
    batch_span,
    build_resource,
    consumer_span,
    exporter_names,
    exporters_from_env,
    genai_request_attributes,
    genai_response_attributes,
    genai_span_name,
    memory_tracer_provider,
    messaging_attributes,
    messaging_span_name,
    producer_headers,
    producer_span,
    span_links,
)

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, exporter = memory_tracer_provider("unit")
    yield provider, exporter
    provider.shutdown()


# --- attribute builders ----------------------------------------------------------------------


def test_genai_request_attributes_use_the_latest_names() -> None:
    attrs = genai_request_attributes("chat", "local", "gemma-3-270m", 64, 0.7, 0.9)
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "local",
        "gen_ai.request.model": "gemma-3-270m",
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.7,
        "gen_ai.request.top_p": 0.9,
    }
    # The deprecated name the provider replaced must not appear.
    assert genai.GEN_AI_SYSTEM not in attrs


def test_genai_request_attributes_leave_out_unset_values_and_keep_zero() -> None:
    attrs = genai_request_attributes("text_completion", "vllm", "m", temperature=0.0)
    assert attrs == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": "m",
        "gen_ai.request.temperature": 0.0,
    }


def test_genai_request_optional_attributes() -> None:
    attrs = genai_request_attributes(
        "chat",
        "local",
        "m",
        top_k=40,
        seed=7,
        stop_sequences=("\n\n",),
        stream=True,
        choice_count=2,
        frequency_penalty=0.1,
        presence_penalty=0.2,
        conversation_id="s-1",
    )
    assert attrs["gen_ai.request.top_k"] == 40
    assert attrs["gen_ai.request.seed"] == 7
    assert attrs["gen_ai.request.stop_sequences"] == ["\n\n"]
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.request.frequency_penalty"] == 0.1
    assert attrs["gen_ai.request.presence_penalty"] == 0.2
    assert attrs["gen_ai.conversation.id"] == "s-1"


def test_genai_response_attributes() -> None:
    attrs = genai_response_attributes(12, 34, ["stop"], "gemma-3-270m", "req-1")
    assert attrs == {
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.response.model": "gemma-3-270m",
        "gen_ai.response.id": "req-1",
    }
    assert genai_response_attributes() == {}
    assert genai_response_attributes(0, 0) == {
        "gen_ai.usage.input_tokens": 0,
        "gen_ai.usage.output_tokens": 0,
    }
    assert genai_response_attributes(time_to_first_chunk_s=0.25) == {
        "gen_ai.response.time_to_first_chunk": 0.25
    }


def test_attribute_names_match_the_installed_semantic_conventions() -> None:
    attrs = {
        **genai_request_attributes("chat", "p", "m", 1, 0.5, 0.5),
        **genai_response_attributes(1, 2, ["stop"], "m", "id"),
    }
    known = {v for k, v in vars(genai).items() if k.startswith("GEN_AI_")}
    assert set(attrs) <= known
    mattrs = messaging_attributes("process", "t", 1, 2, "k", "g", 3)
    assert set(mattrs) <= {v for k, v in vars(msg).items() if k.startswith("MESSAGING_")}


def test_messaging_attributes_full() -> None:
    attrs = messaging_attributes(
        "receive",
        "llm.requests",
        partition=3,
        offset=42,
        key=b"user-1",
        consumer_group="router",
        batch_count=10,
    )
    assert attrs == {
        "messaging.system": "kafka",
        "messaging.operation.type": "receive",
        "messaging.operation.name": "receive",
        "messaging.destination.name": "llm.requests",
        "messaging.destination.partition.id": "3",
        "messaging.kafka.offset": 42,
        "messaging.kafka.message.key": "user-1",
        "messaging.consumer.group.name": "router",
        "messaging.batch.message_count": 10,
    }
    # Deprecated names are not used.
    assert msg.MESSAGING_KAFKA_MESSAGE_OFFSET not in attrs
    assert msg.MESSAGING_KAFKA_CONSUMER_GROUP not in attrs


def test_messaging_attributes_minimal_and_partition_zero() -> None:
    attrs = messaging_attributes("send", "llm.responses", partition=0, offset=0)
    assert attrs["messaging.destination.partition.id"] == "0"
    assert attrs["messaging.kafka.offset"] == 0
    assert "messaging.kafka.message.key" not in attrs
    assert (
        messaging_attributes("send", "t", operation_name="publish")["messaging.operation.name"]
        == "publish"
    )


def test_span_names() -> None:
    assert messaging_span_name("process", "llm.requests") == "process llm.requests"
    assert genai_span_name("chat", "gemma-3-270m") == "chat gemma-3-270m"


# --- setup from the environment ----------------------------------------------------------------


def test_nothing_is_exported_without_an_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    assert exporter_names() == ["otlp"]
    assert exporters_from_env() == []


def test_otlp_exporter_when_an_endpoint_is_set(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    exporters = exporters_from_env()
    assert [type(e).__name__ for e in exporters] == ["OTLPSpanExporter"]
    assert exporters[0]._endpoint == "http://127.0.0.1:4318/v1/traces"  # type: ignore[attr-defined]


def test_traces_endpoint_is_used_as_is(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h:9/custom")
    (exporter,) = exporters_from_env()
    assert exporter._endpoint == "http://h:9/custom"  # type: ignore[attr-defined]


def test_none_and_console_exporters(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    clean_env.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporters_from_env() == []
    clean_env.setenv("OTEL_TRACES_EXPORTER", "console, otlp")
    exporters = exporters_from_env()
    assert [type(e).__name__ for e in exporters] == ["ConsoleSpanExporter", "OTLPSpanExporter"]
    clean_env.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert exporters_from_env() == []


def test_resource_defaults(clean_env: pytest.MonkeyPatch) -> None:
    attrs = build_resource("router").attributes
    assert attrs["service.name"] == "router"
    assert attrs["service.namespace"] == "llmops"
    other = build_resource("router").attributes
    assert attrs["service.instance.id"] != other["service.instance.id"]  # one per process start
    assert attrs["telemetry.sdk.language"] == "python"


def test_resource_environment_overrides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "service.namespace=prod,deployment.environment.name=eu"
    )
    clean_env.setenv("OTEL_SERVICE_NAME", "router-eu")
    attrs = build_resource("router").attributes
    assert attrs["service.name"] == "router-eu"
    assert attrs["service.namespace"] == "prod"
    assert attrs["deployment.environment.name"] == "eu"


SETUP_SCRIPT = """
import os
from llmops.telemetry.tracing import get_tracer, setup_telemetry, shutdown_telemetry
first = setup_telemetry("unit-setup")
assert setup_telemetry("other") is first, "setup must be idempotent"
with get_tracer().start_as_current_span("hello"):
    pass
shutdown_telemetry()
shutdown_telemetry()
assert setup_telemetry("again") is first, "the global provider is set once per process"
os._exit(0)  # skip atexit: only our shutdown may have flushed the span
"""


def test_setup_is_idempotent_and_shutdown_flushes(clean_env: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARS}
    env.update(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="from-env")
    done = subprocess.run(
        [sys.executable, "-c", SETUP_SCRIPT], env=env, capture_output=True, timeout=60, check=True
    )
    span = json.loads(done.stdout)
    assert span["name"] == "hello"
    assert span["resource"]["attributes"]["service.name"] == "from-env"
    assert span["resource"]["attributes"]["service.namespace"] == "llmops"


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


def test_sampler_comes_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_TRACES_SAMPLER", "always_off")
    provider, exporter = memory_tracer_provider("sampled")
    with provider.get_tracer("t").start_as_current_span("dropped") as span:
        assert not span.is_recording()
    provider.shutdown()
    assert exporter.get_finished_spans() == ()
