"""From consumed records to what they produce, one `process` span per record. No IO.

A batch of records becomes rows for one table plus records for other topics. A record that
cannot be decoded (not JSON, not the contract, too large) or whose handling fails becomes a
dead letter on llm.dlq instead, so bad input never stops the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faust.types import EventT
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from llmops import metrics, telemetry
from llmops.bus import Record
from llmops.deadletter import Rejected, build_dead_letter
from llmops.propagation import Headers
from llmops.ratelog import RejectionLog
from schemas import Event
from schemas.topics import CONTENT_TYPE_HEADER, EVENT_TYPE_HEADER, JSON_CONTENT_TYPE

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to publish once the batch's rows are stored."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


@dataclass(slots=True)
class Batch:
    """What a batch of input records produced, before any of it is stored."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    # One per record: its `process` span, for the links of the batch's insert span.
    contexts: list[Context] = field(default_factory=list)
    rejected: int = 0


Handler = Callable[[E, Record, Span, Batch], None]


def json_headers(event_type: str) -> Headers:
    """Content headers plus the current trace context (call inside the record's span)."""
    return telemetry.producer_headers(
        [
            (CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),
            (EVENT_TYPE_HEADER, event_type.encode()),
        ]
    )


def message_headers(event: EventT[bytes]) -> Headers:
    """The record's headers as Kafka has them (repeats kept), whatever shape faust holds."""
    raw = event.message.headers
    if not raw:
        return []
    if isinstance(raw, Mapping):
        return list(raw.items())
    return list(raw)


def to_record(event: EventT[bytes]) -> Record:
    message = event.message
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=message_headers(event),
        timestamp_ms=int(message.timestamp * 1000),
    )


class Converter:
    """Decodes records into one contract and hands each to a handler inside its span."""

    def __init__(
        self,
        tracer: Tracer,
        service: str,
        consumer_group: str,
        max_bytes: int,
        dlq_topic: str | None,
    ) -> None:
        self.tracer = tracer
        self.service = service
        self.consumer_group = consumer_group
        self.max_bytes = max_bytes
        # None: rejected records are logged and skipped (the input is the dead-letter topic
        # itself, and a dead letter about a dead letter would come straight back).
        self.dlq_topic = dlq_topic
        self._rejections = RejectionLog(log, service)

    def convert(self, records: Sequence[Record], contract: type[E], handle: Handler[E]) -> Batch:
        batch = Batch()
        for record in records:
            with telemetry.consumer_span(
                self.tracer,
                telemetry.messaging_span_name("process", record.topic),
                record.headers,
                record.topic,
                record.partition,
                record.offset,
                key=record.key,
                consumer_group=self.consumer_group,
                attributes={"messaging.message.body.size": len(record.value or b"")},
            ) as span:
                batch.contexts.append(trace.set_span_in_context(span))
                try:
                    handle(record.decode(contract, self.max_bytes), record, span, batch)
                except Rejected as rejected:
                    self._reject(record, rejected, span, batch)
                except RecursionError:  # nested deeper than the handler's parsing can go
                    failed = Rejected("schema_invalid", "nested too deeply to process")
                    self._reject(record, failed, span, batch)
                except Exception as error:  # a bug on one record must not stop the worker
                    failed = Rejected("processing_error", f"{type(error).__name__}: {error}")
                    self._reject(record, failed, span, batch, error)
        return batch

    def _reject(
        self,
        record: Record,
        rejected: Rejected,
        span: Span,
        batch: Batch,
        error: Exception | None = None,
    ) -> None:
        span.set_status(Status(StatusCode.ERROR, rejected.reason[:256]))
        span.set_attribute("error.type", rejected.kind)
        batch.rejected += 1
        # Bounded: one line per kind per interval (a bug's traceback included once).
        self._rejections.rejected(
            rejected.kind if error is None else f"{rejected.kind}:{type(error).__name__}",
            rejected.reason,
            f"{record.topic}[{record.partition}]@{record.offset}"
            + ("" if self.dlq_topic else " (skipped, not dead-lettered)"),
            error=error,
            level=logging.WARNING if error is None else logging.ERROR,
        )
        if self.dlq_topic is None:
            return
        metrics.count_dead_letter(self.service, rejected.kind)
        letter = build_dead_letter(
            rejected=rejected,
            service=self.service,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            payload=record.value,
            headers=record.headers,
        )
        # Keyed by source topic, as the catalogue says for llm.dlq.
        batch.outgoing.append(
            Outgoing(
                self.dlq_topic, record.topic.encode(), letter.to_bytes(), json_headers("DeadLetter")
            )
        )
