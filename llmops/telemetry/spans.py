"""Spans over Kafka hops: the producer's, the consumer's (a child of the context in the record's
headers), a batch's (linked to each record's), and the app's CLIENT span around a request.

Services and the SDK start these spans only through here, so every hop carries the same
messaging attributes and the trace context travels the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from llmops.telemetry.conventions import (
    MESSAGING_BATCH_MESSAGE_COUNT,
    Attributes,
    MessagingOperation,
    error_attributes,
    messaging_attributes,
    messaging_span_name,
)
from llmops.telemetry.propagation import Headers, extract_context, inject_context


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
    attrs: Attributes = {MESSAGING_BATCH_MESSAGE_COUNT: len(context_list)}
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


def start_client_span(tracer: Tracer, name: str, attributes: Mapping[str, AttributeValue]) -> Span:
    """A CLIENT span, started but not made current: it outlives the call that starts it (an
    app's request is open until its reply arrives), so its owner ends it."""
    return tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def record_failure(span: Span, error_type: str, message: str) -> None:
    """Mark a span failed: `error.type` (a bounded kind) and an error status with the detail."""
    span.set_attributes(error_attributes(error_type))
    span.set_status(StatusCode.ERROR, message)
