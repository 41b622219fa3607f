"""Tracing set up only from standard `OTEL_*` variables, span helpers for Kafka hops, and
semantic-convention attribute builders (GenAI and messaging, latest experimental names).

Every service calls `setup_telemetry(name)` once at start and `shutdown_telemetry()` at exit.
Nothing is exported unless an OTLP endpoint (or `OTEL_TRACES_EXPORTER=console`) is configured,
so tests and laptops pay only for in-process spans.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as genai
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.semconv.attributes import service_attributes as svc
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from llmops.telemetry.propagation import Headers, extract_context, inject_context

log = logging.getLogger(__name__)

Attributes = dict[str, AttributeValue]
MessagingOperation = Literal["send", "receive", "process", "settle", "create"]

NAMESPACE = "llmops"
MESSAGING_SYSTEM = "kafka"
TRACER_NAME = "llmops"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_shut_down = False


# --- setup -----------------------------------------------------------------------------------


def _package_version() -> str:
    try:
        return metadata.version("llmops-streams")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_resource(service_name: str) -> Resource:
    """Our defaults, overridden by OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME."""
    defaults: Attributes = {
        svc.SERVICE_NAME: service_name,
        svc.SERVICE_NAMESPACE: NAMESPACE,
        svc.SERVICE_VERSION: _package_version(),
        svc.SERVICE_INSTANCE_ID: str(uuid.uuid4()),
    }
    # Resource.create lets the given attributes win over the environment; the spec wants the
    # operator's environment to win, so merge the environment on top again.
    return Resource.create(defaults).merge(OTELResourceDetector().detect())


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def otlp_endpoint_configured() -> bool:
    return _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") is not None


def exporter_names() -> list[str]:
    """OTEL_TRACES_EXPORTER as a list; `none` anywhere means no exporter at all."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    return [] if "none" in names else names


def _otlp_exporter(fallback_endpoint: str | None = None) -> SpanExporter:
    protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol not in (None, "http/protobuf"):
        log.warning("OTLP protocol %r is not installed here; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The exporter itself reads endpoint, headers, timeout, compression and TLS from OTEL_*.
    if fallback_endpoint is not None and not otlp_endpoint_configured():
        # A base URL, like OTEL_EXPORTER_OTLP_ENDPOINT: the signal's path is appended.
        return OTLPSpanExporter(endpoint=fallback_endpoint.rstrip("/") + "/v1/traces")
    return OTLPSpanExporter()


def exporters_from_env(fallback_endpoint: str | None = None) -> list[SpanExporter]:
    """`fallback_endpoint`: the OTLP base URL to use when no OTEL_* endpoint is set."""
    explicit = "OTEL_TRACES_EXPORTER" in os.environ
    exporters: list[SpanExporter] = []
    for name in exporter_names():
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            # The spec's default exporter is otlp to localhost:4318; we export only when an
            # endpoint is set (or otlp was asked for by name), so an idle laptop logs no
            # connection errors.
            if otlp_endpoint_configured() or explicit or fallback_endpoint:
                exporters.append(_otlp_exporter(fallback_endpoint))
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER entry %r ignored", name)
    return exporters


def setup_telemetry(service_name: str, fallback_endpoint: str | None = None) -> TracerProvider:
    """Install the global tracer provider for this process (once; later calls return it).

    `fallback_endpoint` (an OTLP/HTTP base URL) is where spans go when no OTEL_* endpoint
    is set: the CLI passes the embedded trace receiver's address.

    The global provider cannot be replaced once set, so this is once per process, even after
    `shutdown_telemetry()`."""
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        provider = TracerProvider(resource=build_resource(service_name))
        for exporter in exporters_from_env(fallback_endpoint):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _provider = provider
        return provider


def shutdown_telemetry(timeout_ms: int = 5000) -> None:
    """Flush what is buffered and stop exporting (safe to call more than once)."""
    global _shut_down
    with _lock:
        provider = None if _shut_down else _provider
        _shut_down = _shut_down or provider is not None
    if provider is not None:
        provider.force_flush(timeout_ms)
        provider.shutdown()


def install_memory_exporter(provider: TracerProvider | None = None) -> InMemorySpanExporter:
    """For tests: every span ended from now on is also kept in memory, exported synchronously."""
    target = provider or setup_telemetry("test")
    exporter = InMemorySpanExporter()
    target.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def memory_tracer_provider(
    service_name: str = "test",
) -> tuple[TracerProvider, InMemorySpanExporter]:
    """For tests: a private (not global) provider whose spans land in memory."""
    provider = TracerProvider(resource=build_resource(service_name), shutdown_on_exit=False)
    return provider, install_memory_exporter(provider)


def get_tracer(name: str = TRACER_NAME) -> Tracer:
    return trace.get_tracer(name, _package_version())


# --- semantic conventions --------------------------------------------------------------------


def _set(attrs: Attributes, key: str, value: AttributeValue | None) -> None:
    if value is not None:
        attrs[key] = value


def genai_request_attributes(
    operation: str,
    provider: str,
    model: str,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    *,
    top_k: int | None = None,
    seed: int | None = None,
    stop_sequences: Sequence[str] | None = None,
    stream: bool | None = None,
    choice_count: int | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    conversation_id: str | None = None,
) -> Attributes:
    """Attributes of a GenAI client/inference span at its start (unset values are left out)."""
    attrs: Attributes = {
        genai.GEN_AI_OPERATION_NAME: operation,
        genai.GEN_AI_PROVIDER_NAME: provider,
        genai.GEN_AI_REQUEST_MODEL: model,
    }
    _set(attrs, genai.GEN_AI_REQUEST_MAX_TOKENS, max_tokens)
    _set(attrs, genai.GEN_AI_REQUEST_TEMPERATURE, temperature)
    _set(attrs, genai.GEN_AI_REQUEST_TOP_P, top_p)
    _set(attrs, genai.GEN_AI_REQUEST_TOP_K, top_k)
    _set(attrs, genai.GEN_AI_REQUEST_SEED, seed)
    if stop_sequences:
        attrs[genai.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop_sequences)
    _set(attrs, genai.GEN_AI_REQUEST_STREAM, stream)
    _set(attrs, genai.GEN_AI_REQUEST_CHOICE_COUNT, choice_count)
    _set(attrs, genai.GEN_AI_REQUEST_FREQUENCY_PENALTY, frequency_penalty)
    _set(attrs, genai.GEN_AI_REQUEST_PRESENCE_PENALTY, presence_penalty)
    _set(attrs, genai.GEN_AI_CONVERSATION_ID, conversation_id)
    return attrs


def genai_response_attributes(
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    finish_reasons: Sequence[str] | None = None,
    response_model: str | None = None,
    response_id: str | None = None,
    *,
    time_to_first_chunk_s: float | None = None,
) -> Attributes:
    """Attributes known when a GenAI response is complete (unset values are left out)."""
    attrs: Attributes = {}
    _set(attrs, genai.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
    _set(attrs, genai.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
    if finish_reasons:
        attrs[genai.GEN_AI_RESPONSE_FINISH_REASONS] = list(finish_reasons)
    _set(attrs, genai.GEN_AI_RESPONSE_MODEL, response_model)
    _set(attrs, genai.GEN_AI_RESPONSE_ID, response_id)
    _set(attrs, genai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, time_to_first_chunk_s)
    return attrs


def genai_span_name(operation: str, model: str) -> str:
    """The GenAI convention's span name: `{operation} {model}`."""
    return f"{operation} {model}".strip()


def messaging_attributes(
    operation_type: MessagingOperation,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: str | bytes | None = None,
    consumer_group: str | None = None,
    batch_count: int | None = None,
    *,
    operation_name: str | None = None,
    message_id: str | None = None,
    body_size: int | None = None,
) -> Attributes:
    """Kafka messaging attributes; `operation_name` defaults to the operation type."""
    attrs: Attributes = {
        msg.MESSAGING_SYSTEM: MESSAGING_SYSTEM,
        msg.MESSAGING_OPERATION_TYPE: operation_type,
        msg.MESSAGING_OPERATION_NAME: operation_name or operation_type,
        msg.MESSAGING_DESTINATION_NAME: topic,
    }
    if partition is not None:
        # The convention types the partition id as a string (it is generic across systems).
        attrs[msg.MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
    _set(attrs, msg.MESSAGING_KAFKA_OFFSET, offset)
    if key is not None:
        attrs[msg.MESSAGING_KAFKA_MESSAGE_KEY] = (
            key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        )
    _set(attrs, msg.MESSAGING_CONSUMER_GROUP_NAME, consumer_group)
    _set(attrs, msg.MESSAGING_BATCH_MESSAGE_COUNT, batch_count)
    _set(attrs, msg.MESSAGING_MESSAGE_ID, message_id)
    _set(attrs, msg.MESSAGING_MESSAGE_BODY_SIZE, body_size)
    return attrs


def messaging_span_name(operation_name: str, topic: str) -> str:
    """The messaging convention's span name: `{operation name} {destination}`."""
    return f"{operation_name} {topic}"


# --- spans over Kafka hops -------------------------------------------------------------------


@contextmanager
def consumer_span(
    tracer: Tracer,
    name: str,
    headers: Iterable[tuple[str, bytes | None]] | None,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    *,
    key: str | bytes | None = None,
    consumer_group: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A CONSUMER `process` span, child of the context the record was produced in.

    The span is current inside the block, so records produced there carry it onward.
    An exception escaping the block is recorded and sets the span's status to error.
    """
    attrs = messaging_attributes(
        "process", topic, partition, offset, key=key, consumer_group=consumer_group
    )
    if attributes:
        attrs.update(attributes)
    with tracer.start_as_current_span(
        name, context=extract_context(headers), kind=SpanKind.CONSUMER, attributes=attrs
    ) as span:
        yield span


@contextmanager
def producer_span(
    tracer: Tracer,
    topic: str,
    *,
    key: str | bytes | None = None,
    partition: int | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A PRODUCER `send` span; build the record's headers inside it with `producer_headers()`."""
    attrs = messaging_attributes("send", topic, partition, key=key)
    if attributes:
        attrs.update(attributes)
    with tracer.start_as_current_span(
        messaging_span_name("send", topic), kind=SpanKind.PRODUCER, attributes=attrs
    ) as span:
        yield span


def producer_headers(headers: Headers | None = None, context: Context | None = None) -> Headers:
    """Record headers carrying the current (or given) trace context (`traceparent`, ...)."""
    return inject_context(list(headers or ()), context)


def span_links(contexts: Iterable[Context]) -> list[Link]:
    """One link per distinct valid span context; records without trace context add none."""
    links: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for context in contexts:
        span_context = trace.get_current_span(context).get_span_context()
        ident = (span_context.trace_id, span_context.span_id)
        if span_context.is_valid and ident not in seen:
            seen.add(ident)
            links.append(Link(span_context))
    return links


@contextmanager
def batch_span(
    tracer: Tracer,
    name: str,
    contexts: Iterable[Context],
    *,
    topic: str | None = None,
    consumer_group: str | None = None,
    operation: MessagingOperation = "process",
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """A CONSUMER span over a batch of records, LINKED to each record's producing context.

    A batch has many producers, so it cannot be the child of one; it is the child of the
    ambient context (usually none: a new trace) and links keep every hop findable.
    The SDK keeps at most OTEL_SPAN_LINK_COUNT_LIMIT (128) links per span.
    """
    context_list = list(contexts)
    attrs: Attributes = {msg.MESSAGING_BATCH_MESSAGE_COUNT: len(context_list)}
    if topic is not None:
        attrs.update(
            messaging_attributes(
                operation, topic, consumer_group=consumer_group, batch_count=len(context_list)
            )
        )
    if attributes:
        attrs.update(attributes)
    with tracer.start_as_current_span(
        name,
        kind=SpanKind.CONSUMER,
        attributes=attrs,
        links=span_links(context_list),
    ) as span:
        yield span
