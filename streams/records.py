"""From consumed records to what they produce, one `process` span per record. No IO.

A batch of records becomes rows for one table plus records for other topics. A record that
cannot be decoded (not JSON, not the contract, too large) or whose handling fails becomes a
dead letter on llm.dlq instead, so bad input never stops the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faust.types import EventT
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Tracer
from opentelemetry.util.types import AttributeValue

from llmops.kafka.deadletter import Rejected, rejection_for
from llmops.kafka.record import Record, consumed_headers
from llmops.telemetry import metrics
from llmops.telemetry.conventions import MESSAGING_MESSAGE_BODY_SIZE, messaging_span_name
from llmops.telemetry.propagation import Headers
from llmops.telemetry.ratelog import RejectionLog
from llmops.telemetry.spans import consumer_span, producer_headers, record_failure
from schemas import Event
from schemas.topics import CONTENT_TYPE_HEADER, EVENT_TYPE_HEADER, JSON_CONTENT_TYPE
from streams.isolate import Unstorable

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to publish once the batch's rows are stored."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


# What a record costs on top of its key, value and headers in a produce request (record
# batch and request framing), so a size check errs on the side of "too large".
RECORD_OVERHEAD_BYTES = 512


def record_size(out: Outgoing) -> int:
    """The bytes `out` takes in a produce request, framing included (an upper bound)."""
    headers = sum(len(k) + len(v) for k, v in out.headers)
    return len(out.value) + len(out.key or b"") + headers + RECORD_OVERHEAD_BYTES


@dataclass(slots=True)
class Batch:
    """What a batch of input records produced, before any of it is stored."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    # One per record: its `process` span, for the links of the batch's insert span.
    contexts: list[Context] = field(default_factory=list)
    rejected: int = 0
    # The record each row and each outgoing record came from (parallel to rows, outgoing),
    # so a row the store refuses can be dead-lettered and what it produced withheld.
    row_sources: list[Record] = field(default_factory=list)
    outgoing_sources: list[Record] = field(default_factory=list)
    # Rows a sink completes once per batch (a row and what completing it needs): work that is
    # only fast in batches, such as running the response detectors.
    deferred: list[tuple[dict[str, Any], Any]] = field(default_factory=list)


Handler = Callable[[E, Record, Span, Batch], None]


def json_headers(event_type: str) -> Headers:
    """Content headers plus the current trace context (call inside the record's span)."""
    return producer_headers(
        [
            (CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),
            (EVENT_TYPE_HEADER, event_type.encode()),
        ]
    )


def message_headers(event: EventT[bytes]) -> Headers:
    """The record's headers as Kafka has them (repeats kept), whatever shape faust holds."""
    return consumed_headers(event.message.headers)


def to_record(event: EventT[bytes]) -> Record:
    message = event.message
    return Record.consumed(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        message.headers,
        int(message.timestamp * 1000),
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
        dead_letter_rejected: bool = True,
    ) -> None:
        self.tracer = tracer
        self.service = service
        self.consumer_group = consumer_group
        self.max_bytes = max_bytes
        # None: nothing is dead-lettered, bad records are logged and skipped (the input is
        # the dead-letter topic itself, and a dead letter about a dead letter would come
        # straight back).
        self.dlq_topic = dlq_topic
        # False: input that cannot be decoded is skipped, not dead-lettered, because another
        # consumer of the topic owns its dead letters (llm.requests: the router). Rows the
        # store refuses are still dead-lettered: only this worker knows of them.
        self.dead_letter_rejected = dead_letter_rejected and dlq_topic is not None
        self._rejections = RejectionLog(log, service)

    def _span(
        self, record: Record, attributes: Mapping[str, AttributeValue] | None = None
    ) -> AbstractContextManager[Span]:
        """The processing span of one record, a child of the context in its headers."""
        return consumer_span(
            self.tracer,
            messaging_span_name("process", record.topic),
            record.headers,
            record.topic,
            record.partition,
            record.offset,
            key=record.key,
            consumer_group=self.consumer_group,
            attributes=attributes,
        )

    def convert(self, records: Sequence[Record], contract: type[E], handle: Handler[E]) -> Batch:
        batch = Batch()
        for record in records:
            with self._span(
                record, {MESSAGING_MESSAGE_BODY_SIZE: len(record.value or b"")}
            ) as span:
                batch.contexts.append(trace.set_span_in_context(span))
                rows_before, outgoing_before = len(batch.rows), len(batch.outgoing)
                try:
                    handle(record.decode(contract, self.max_bytes), record, span, batch)
                except Exception as error:  # bad input or a bug: that record alone fails
                    rejected, bug = rejection_for(error)
                    self._reject(record, rejected, span, batch, bug)
                batch.row_sources.extend([record] * (len(batch.rows) - rows_before))
                batch.outgoing_sources.extend([record] * (len(batch.outgoing) - outgoing_before))
        return batch

    def _reject(
        self,
        record: Record,
        rejected: Rejected,
        span: Span,
        batch: Batch,
        bug: Exception | None = None,
    ) -> None:
        record_failure(span, rejected.kind, rejected.reason[:256])
        batch.rejected += 1
        # A record gives its outputs or a dead letter, never both: drop what a handler that
        # failed half way had added.
        del batch.rows[len(batch.row_sources) :]
        del batch.outgoing[len(batch.outgoing_sources) :]
        # Bounded: one line per kind per interval (a bug's traceback included once).
        self._rejections.failed(
            rejected.kind,
            rejected.reason,
            record.where + ("" if self.dead_letter_rejected else " (skipped, not dead-lettered)"),
            bug,
        )
        if not self.dead_letter_rejected:
            metrics.count_skipped(self.service, record.topic, rejected.kind)
            return
        batch.outgoing.append(self._dead_letter(record, rejected))

    def _dead_letter(self, record: Record, rejected: Rejected) -> Outgoing:
        assert self.dlq_topic is not None
        metrics.count_dead_letter(self.service, rejected.kind)
        letter = record.dead_letter(rejected, self.service)
        # Keyed by source topic, as the catalogue says for llm.dlq.
        return Outgoing(
            self.dlq_topic, record.topic.encode(), letter.to_bytes(), json_headers("DeadLetter")
        )

    def refused(self, batch: Batch, refused: Sequence[Unstorable[Any]]) -> list[Outgoing]:
        """What to publish once the store refused some of the batch's rows: the batch's
        records less those of the refused rows' sources (a response's features must not
        count a row that is not stored), plus a dead letter for each such source (or, when
        reading llm.dlq itself, a log line and a count: never a loop)."""
        if not refused:
            return batch.outgoing
        sources: dict[tuple[str, int, int], Record] = {}
        refusals: dict[tuple[str, int, int], Unstorable[Any]] = {}
        for failure in refused:
            record = batch.row_sources[failure.index]
            sources[_where(record)] = record
            refusals.setdefault(_where(record), failure)
        kept = [
            out
            for out, source in zip(batch.outgoing, batch.outgoing_sources, strict=True)
            if _where(source) not in sources
        ]
        for where, record in sources.items():
            failure = refusals[where]
            request_id = failure.row.get("request_id") if isinstance(failure.row, Mapping) else None
            rejected = Rejected(
                "unstorable",
                f"the store refused the row: {failure.reason}",
                request_id=request_id if isinstance(request_id, str) and request_id else None,
            )
            self._rejections.rejected(
                "unstorable",
                rejected.reason,
                record.where + ("" if self.dlq_topic else " (skipped, not dead-lettered)"),
                level=logging.ERROR,
            )
            if self.dlq_topic is None:
                metrics.count_skipped(self.service, record.topic, rejected.kind)
            else:
                with self._span(record) as span:
                    record_failure(span, rejected.kind, rejected.reason[:256])
                    kept.append(self._dead_letter(record, rejected))
        return kept


def _where(record: Record) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)
