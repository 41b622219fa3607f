"""Table sinks: a topic's records, decoded into one contract, stored as rows of one table.

A sink is a declared `TableSink` in `SINKS`; `SinkAgent` runs any of them. Per batch:
records -> rows + records for other topics -> rows inserted -> records published -> events
acked, never earlier:
- `TableWriter.write` retries an insert with backoff while the store is down and never
  gives up, so such a batch is never acked; rows the store refuses for their values are
  split out and dead-lettered as `unstorable`, with what their records produced withheld,
  so one bad record never stops a table;
- records for other topics (dead letters, features) are acked by the broker (acks=all)
  before the events that produced them are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal

import faust
from faust.types import StreamT
from opentelemetry.trace import Span, Tracer

from llmops.kafka.record import Record
from llmops.kafka.signing import SigningKeys
from llmops.telemetry import metrics
from llmops.telemetry.conventions import (
    MESSAGING_DESTINATION_NAME,
    db_attributes,
    db_span_name,
    genai_request_parameters,
    genai_response_attributes,
    llmops_attributes,
)
from llmops.telemetry.propagation import Headers
from llmops.telemetry.ratelog import RejectionLog
from llmops.telemetry.spans import batch_span
from schemas import DeadLetter, InferenceResult, PromptRequest
from schemas.topics import DLQ, REQUESTS, RESPONSES, TopicSpec
from streams import SERVICE, rows
from streams.agents.delivery import Delivery
from streams.detectors.base import Detector, Exchange, Signal
from streams.features import (
    ResponseFeatures,
    extract_features,
    features_with_signals,
    group_key_text,
)
from streams.isolate import Unstorable
from streams.judge.requests import JudgeConfig, is_verdict, judge_requests
from streams.judge.verdict import parse_verdict, verdict_signals
from streams.privacy import TextPolicy
from streams.records import Batch, Converter, E, Outgoing, json_headers, to_record
from streams.repartition import pack_features
from streams.rows import Row
from streams.sink import TableWriter

# What a sink does with input it cannot decode or handle:
# - "dead_letter": a dead letter on llm.dlq;
# - "skip": skipped and counted, because another consumer of the topic owns its dead letters
#   (rows the store refuses are still dead-lettered: only this worker knows of them);
# - "log": logged and skipped, never dead-lettered (the input is llm.dlq itself, and a dead
#   letter about a dead letter would come straight back).
Rejects = Literal["dead_letter", "skip", "log"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What the sinks' fill functions need beyond the record itself."""

    text_policy: TextPolicy
    # Results are stored only when signed by our services: a forged one is a dead letter.
    signing: SigningKeys | None
    features_topic: str
    # Run on every response, their signals stored in its row (Settings.detectors).
    detectors: tuple[Detector, ...] = ()
    # Request attributes that split windows by segment (Settings.segment_attributes).
    segment_attributes: tuple[str, ...] = ()
    # The model-graded check (Settings.judge_*): which app responses get judge requests.
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # A detector that fails is logged here, at a bounded rate, and its signals left out.
    detector_failures: RejectionLog = field(
        default_factory=lambda: RejectionLog(log, SERVICE), compare=False
    )


# Adds a decoded record's rows (and any records for other topics) to the batch; raising
# makes that record alone a dead letter (or a skip, per the sink's `rejects`).
Fill = Callable[[SinkContext, E, Record, Span, Batch], None]
Finish = Callable[[SinkContext, Batch], None]


@dataclass(frozen=True, slots=True)
class TableSink(Generic[E]):
    """One topic stored into one table."""

    agent: str  # the faust agent's name
    topic: TopicSpec
    contract: type[E]
    fill: Fill[E]
    table: str
    columns: tuple[str, ...]
    rejects: Rejects = "dead_letter"
    # Completes the batch's deferred rows once every record is filled (batched work).
    finish: Finish | None = None


def fill_request(
    context: SinkContext, request: PromptRequest, record: Record, span: Span, batch: Batch
) -> None:
    span.set_attributes(
        genai_request_parameters(
            model=request.model or None, max_tokens=request.sampling.max_tokens
        )
    )
    batch.rows.append(rows.request_row(request, len(record.value or b"")))


def detect_signals(context: SinkContext, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
    """Every configured detector's signals of each exchange, one call per detector for the
    whole batch. A detector that raises (or answers out of contract) is asked again one
    exchange at a time, so only the exchanges it fails on lose its signals; records are
    stored either way."""
    found: list[list[Signal]] = [[] for _ in exchanges]
    if not exchanges:
        return found
    for detector in context.detectors:
        try:
            answers = _answers(detector, exchanges)
        except Exception:
            answers = [_one_answer(context, detector, exchange) for exchange in exchanges]
        for signals, answer in zip(found, answers, strict=True):
            signals.extend(answer)
    return found


def _answers(detector: Detector, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
    answers = detector.detect(exchanges)
    if len(answers) != len(exchanges):
        raise ValueError(f"answered for {len(answers)} of {len(exchanges)} exchanges")
    return answers


def _one_answer(context: SinkContext, detector: Detector, exchange: Exchange) -> list[Signal]:
    try:
        [answer] = _answers(detector, [exchange])
    except Exception as error:
        context.detector_failures.failed(
            f"detector:{detector.name}",
            f"detector {detector.name}@{detector.version} failed",
            f"response {exchange.request_id}",
            error,
        )
        return []
    return answer


def exchange_of(result: InferenceResult) -> Exchange:
    """What the detectors read of a result; JSON validity is judged when the request asked
    for a JSON answer (its response_format, carried on the result)."""
    return Exchange(
        result.request_id,
        input=result.prompt_text or "",
        output=result.text,
        context=result.context,
        wants_json=result.response_format == "json",
    )


def fill_response(
    context: SinkContext, result: InferenceResult, record: Record, span: Span, batch: Batch
) -> None:
    """A response's row, and its features on the repartition topic keyed by window group."""
    record.verify(context.signing, InferenceResult)  # raises a Rejected: dead-lettered
    features = extract_features(result, context.segment_attributes)
    span.set_attributes(
        genai_response_attributes(
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            finish_reasons=[result.finish_reason],
            response_model=result.model,
        )
    )
    span.set_attributes(genai_request_parameters(model=result.model or None))
    # The response's own failure, if any: processing it went fine.
    span.set_attributes(llmops_attributes(response_error_kind=features.error_kind or None))
    size = len(record.value or b"")
    if is_verdict(result):
        # A judge's verdict (streams/judge/): its row, flagged by its app and attributes, with
        # the parsed verdict as its only signals (013's view copies it to `judgements`); no
        # detectors, no features: never judged, never counted in the windows.
        signals = verdict_signals(parse_verdict(result.text))
        batch.rows.append(rows.response_row(result, features, size, context.text_policy, signals))
        return
    row = rows.response_row(result, features, size, context.text_policy)
    batch.rows.append(row)
    # Its signals, and its features with them: once per batch (finish_responses). The
    # headers are built here, inside the record's span, so the features carry its trace.
    headers = json_headers("ResponseFeatures")
    batch.deferred.append((row, (exchange_of(result), features, record, headers)))
    # A sampled share is graded by the judge model through the router, like any request.
    for request in judge_requests(result, context.judge):
        batch.outgoing.append(
            Outgoing(
                REQUESTS.name,
                request.sticky_key.encode(),
                request.to_bytes(),
                json_headers("PromptRequest"),
            )
        )


def finish_responses(context: SinkContext, batch: Batch) -> None:
    """The response rows' signal columns, the detectors run once over the whole batch; then
    each response's features, signals included, for its window (keyed by window group)."""
    pending: list[tuple[Row, Exchange, ResponseFeatures, Record, Headers]] = [
        (row, *deferred) for row, deferred in batch.deferred
    ]
    batch.deferred.clear()
    found = detect_signals(context, [exchange for _, exchange, *_ in pending])
    for (row, _, features, record, headers), signals in zip(pending, found, strict=True):
        row.update(rows.signal_columns(signals))
        with_signals = features_with_signals(features, signals)
        batch.outgoing.append(
            Outgoing(
                context.features_topic,
                group_key_text(with_signals.group).encode(),
                with_signals.to_bytes(),
                headers,
            )
        )
        batch.outgoing_sources.append(record)


def fill_dead_letter(
    context: SinkContext, letter: DeadLetter, record: Record, span: Span, batch: Batch
) -> None:
    span.set_attributes(llmops_attributes(dead_letter_kind=letter.kind))
    batch.rows.append(rows.dead_letter_row(letter, context.text_policy))


SINKS: tuple[TableSink[Any], ...] = (
    # The router dead-letters what it cannot decode on llm.requests, once: skipped here.
    TableSink(
        "streams.requests",
        REQUESTS,
        PromptRequest,
        fill_request,
        rows.REQUESTS_TABLE,
        rows.REQUEST_COLUMNS,
        rejects="skip",
    ),
    TableSink(
        "streams.responses",
        RESPONSES,
        InferenceResult,
        fill_response,
        rows.RESPONSES_TABLE,
        rows.RESPONSE_COLUMNS,
        finish=finish_responses,
    ),
    TableSink(
        "streams.dead_letters",
        DLQ,
        DeadLetter,
        fill_dead_letter,
        rows.DEAD_LETTERS_TABLE,
        rows.DEAD_LETTER_COLUMNS,
        rejects="log",
    ),
)


def sink_converter(
    rejects: Rejects, tracer: Tracer, consumer_group: str, max_bytes: int
) -> Converter:
    """The converter that treats bad input the way a sink declares."""
    return Converter(
        tracer,
        SERVICE,
        consumer_group,
        max_bytes,
        None if rejects == "log" else DLQ.name,
        dead_letter_rejected=rejects == "dead_letter",
    )


class SinkAgent(Generic[E]):
    """Runs one declared sink: batch -> rows + records -> stored -> published -> acked."""

    def __init__(
        self,
        sink: TableSink[E],
        context: SinkContext,
        converter: Converter,
        writer: TableWriter,
        delivery: Delivery,
        tracer: Tracer,
    ) -> None:
        self.sink = sink
        self.context = context
        self.converter = converter
        self.writer = writer
        self.delivery = delivery
        self.tracer = tracer

    def register(self, app: faust.App) -> None:
        app.agent(app.topic(self.sink.topic.name), name=self.sink.agent)(self.consume)

    def close(self) -> None:
        self.writer.close()

    def _fill(self, value: E, record: Record, span: Span, batch: Batch) -> None:
        self.sink.fill(self.context, value, record, span, batch)

    def convert(self, records: Sequence[Record]) -> Batch:
        """Pure: the batch's rows and records, nothing stored or sent yet."""
        batch = self.converter.convert(records, self.sink.contract, self._fill)
        if self.sink.finish is not None:
            self.sink.finish(self.context, batch)
        return batch

    async def consume(self, stream: StreamT[bytes]) -> None:
        """Never acks an event before what it produced is stored and published."""
        async for events in self.delivery.batches(stream):
            started = time.perf_counter()
            records = [to_record(e) for e in events]
            # Off the event loop: the detectors of a batch (the embedding tier: seconds) must
            # not stall the broker heartbeats and the other agents while they run.
            batch = await asyncio.to_thread(self.convert, records)
            topic = records[0].topic if records else ""
            await self._store(batch, topic)
            await self.delivery.ack(stream, events)
            metrics.RECORDS_CONSUMED.labels(SERVICE, topic).inc(len(events))
            metrics.PROCESSING_SECONDS.labels(SERVICE, topic).observe(time.perf_counter() - started)

    async def _store(self, batch: Batch, topic: str) -> None:
        """Insert the batch's rows (retrying while the store is down), then publish its
        records (retrying), with dead letters for the rows the store refused."""
        writer = self.writer
        attributes = db_attributes("clickhouse", "INSERT", writer.table, len(batch.rows))
        attributes[MESSAGING_DESTINATION_NAME] = topic  # the topic the rows came from
        with batch_span(
            self.tracer, db_span_name("INSERT", writer.table), batch.contexts, attributes=attributes
        ):
            refused = await writer.write(batch.rows)
            await self.delivery.publish(self.outgoing(batch, refused))

    def outgoing(self, batch: Batch, refused: Sequence[Unstorable[Any]]) -> list[Outgoing]:
        """Pure: what to publish once the store answered: the batch's records less what the
        refused rows produced, plus their dead letters; the features of the stored rows
        packed into one record per window group (streams/repartition.py)."""
        return pack_features(
            self.converter.refused(batch, refused),
            self.context.features_topic,
            # Half the message bound: far from the producer's and the broker's limits (the
            # producer sends up to 1,000,000 bytes; Kafka's brokers take about 1 MiB).
            self.converter.max_bytes // 2,
        )
