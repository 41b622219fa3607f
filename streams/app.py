"""The metrics worker: a faust app from Settings.

Agents (each consumes raw bytes, so undecodable input can be dead-lettered whole):
- llm.requests  -> `requests` table (what it cannot decode is skipped and counted: the
  router owns llm.requests' dead letters, so each bad request is dead-lettered once)
- llm.responses -> `responses` table, and one ResponseFeatures record per response on the
  internal topic `<app id>-response-features`, keyed by the response's window group
- <app id>-response-features -> tumbling windows -> `metric_windows` table + llm.metrics
- llm.dlq -> `dead_letters` table

Acks and commits. faust commits, per partition, the offset below the first message no
stream has acknowledged yet (`Consumer._new_offset` walks the consecutive acked offsets).
Each agent iterates `stream.noack_take(n, within)`: it yields batches of events and, unlike
`take()`, never acks them itself (`take()` acks a batch in a `finally` block when the loop
goes on, even when the body failed or the task was cancelled). An event is acked
explicitly, with `stream.ack(event)`, only after everything it produced is stored:
- table rows: after `TableWriter.write` returned (it retries an insert with backoff while
  the store is down and never gives up, so such a batch is never acked; rows the store
  refuses for their values are split out and dead-lettered as `unstorable`, with what their
  records produced withheld, so one bad record never stops a table);
- records for other topics (dead letters, features, metric windows): after the broker
  acknowledged them (producer acks=all);
- a response's window contribution: its features record is acked only when the window it
  fell into has been emitted (row inserted and MetricWindow published).
A worker that stops or crashes before that leaves the offsets uncommitted: the records are
consumed again and every output is idempotent (see below). `stream_wait_empty` is off: a
rebalance does not wait for windows to close; the new owner replays what was not acked.

Idempotence. Rows carry their ids and the tables are ReplacingMergeTree ordered by them
(request_id; source topic/partition/offset + service; window start + group), so replayed
rows collapse (the latest insert wins). A window counts each request id once. A window row
is keyed by window start + group, so a re-emission replaces it: it must never be a part of
what was emitted before. A window that was open when this worker first saw it is complete
from the replay (none of its records were acked before it was emitted). A window first
seen after it closed (a replay after a restart or rebalance, a straggler, a backlog) may
have been emitted already: before it is emitted, it is completed from the `responses`
table, which holds every response that ever reached the windows (rows are inserted before
the features are published), so its new aggregate is the union.

Window ownership. llm.responses is keyed by request id, so one group's responses are spread
over every partition and every worker. The responses agent therefore repartitions: it
publishes each response's features keyed by its group, so every (prompt, version, variant,
pool, model) lands on one partition of the features topic and is aggregated by the one
worker that owns that partition. On revocation that worker drops those windows unemitted
and the new owner rebuilds them from the unacknowledged records.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TP, EventT, StreamT, TopicT
from opentelemetry.trace import Span

from llmops.config import Settings
from llmops.kafka.bus import Record
from llmops.kafka.deadletter import classify_decode_error
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.signing import keys_from_settings
from llmops.telemetry import metrics, tracing
from llmops.telemetry.propagation import extract_context
from llmops.telemetry.ratelog import RejectionLog
from schemas import DeadLetter, InferenceResult, MetricWindow, PromptRequest
from schemas.topics import DLQ, METRICS, REQUESTS, RESPONSES, TopicSpec
from streams import backfill, retention, rows
from streams.features import ResponseFeatures, extract_features, group_key_text
from streams.isolate import Unstorable
from streams.privacy import text_policy
from streams.records import (
    Batch,
    Converter,
    Outgoing,
    json_headers,
    message_headers,
    to_record,
)
from streams.sink import Backoff, Reader, TableWriter
from streams.windows import WindowAccumulator, WindowKey

log = logging.getLogger(__name__)

SERVICE = "streams"
DEFAULT_APP_ID = "llmops-streams"
# Partitions of the repartition topic = the most workers that can share the window work.
FEATURES_PARTITIONS = 12
# Span links kept per emitted batch of windows (the SDK's default link limit).
MAX_LINKS = 128


@dataclass(frozen=True)
class WorkerOptions:
    """Knobs of one worker that Settings does not hold."""

    app_id: str = DEFAULT_APP_ID
    # faust's data directory; default Settings.data_dir / "faust".
    data_dir: Path | None = None
    # Wait this long past a window's end before emitting it (default from sink_flush_s).
    window_grace_s: float | None = None
    # Keep an emitted window this long after its last response, for late responses.
    window_retain_s: float | None = None
    # How often due windows are emitted (default: half a window, at most 1 s).
    tick_s: float | None = None
    # faust's web server: None keeps it off; a port serves it on 127.0.0.1 only.
    web_port: int | None = None


def features_topic_spec(app_id: str) -> TopicSpec:
    return TopicSpec(
        f"{app_id}-response-features",
        FEATURES_PARTITIONS,
        "window group (prompt|version|variant|pool|model)",
        "per-response features repartitioned so one worker owns each window group",
        (),
    )


def topics_needed(options: WorkerOptions) -> list[TopicSpec]:
    """Topics the worker reads or writes, at the sizes they must be created with."""
    return [REQUESTS, RESPONSES, DLQ, METRICS, features_topic_spec(options.app_id)]


def faust_settings(settings: Settings, options: WorkerOptions) -> dict[str, Any]:
    """faust configuration; ENVIRONMENT.md's Tansu notes explain the broker knobs."""
    data_dir = options.data_dir or settings.data_dir / "faust"
    web: dict[str, Any] = {"web_enabled": False}
    if options.web_port is not None:
        web = {
            "web_enabled": True,
            "web_port": options.web_port,
            "web_bind": "127.0.0.1",
            "web_host": "127.0.0.1",
        }
    return {
        "broker": [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        "broker_credentials": KafkaSecurity.from_settings(settings).faust_credentials(),
        "store": "memory://",  # no tables: window state is rebuilt from unacked records
        "datadir": str(data_dir),
        "key_serializer": "raw",
        "value_serializer": "raw",  # decode ourselves, so undecodable bytes can be dead-lettered
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": 6,
        "broker_heartbeat_interval": 1,
        "broker_commit_interval": settings.commit_interval_s,
        "producer_acks": -1,
        "stream_wait_empty": False,
        "topic_disable_leader": True,
        "topic_allow_declare": False,  # topics are created at their final size beforehand
        "worker_redirect_stdouts": False,
        **web,
    }


class MetricsWorker:
    """The agents' logic and state; `build_worker` wires it into a faust app."""

    def __init__(self, app: faust.App, settings: Settings, options: WorkerOptions) -> None:
        self.app = app
        self.settings = settings
        self.options = options
        self.tracer = tracing.get_tracer("llmops.streams")
        self.batch_size = settings.sink_batch_size
        self.flush_s = settings.sink_flush_s
        self.backoff = Backoff()
        self.features_topic_name = features_topic_spec(options.app_id).name
        self._topics: dict[str, TopicT] = {
            name: app.topic(name)
            for name in (
                REQUESTS.name,
                RESPONSES.name,
                DLQ.name,
                METRICS.name,
                self.features_topic_name,
            )
        }
        url = settings.clickhouse_url
        self.requests_writer = TableWriter(url, rows.REQUESTS_TABLE, rows.REQUEST_COLUMNS)
        self.responses_writer = TableWriter(url, rows.RESPONSES_TABLE, rows.RESPONSE_COLUMNS)
        self.windows_writer = TableWriter(
            url, rows.METRIC_WINDOWS_TABLE, rows.METRIC_WINDOW_COLUMNS
        )
        self.dead_letters_writer = TableWriter(
            url, rows.DEAD_LETTERS_TABLE, rows.DEAD_LETTER_COLUMNS
        )
        self.reader = Reader(url)
        # Its own connection: retried until migrations ran, it must not drop the seeding's.
        self.retention_reader = Reader(url)
        self.text_policy = text_policy(settings.store_text)
        # Results are stored only when signed by our services: a forged one is a dead letter.
        self.signing = keys_from_settings(settings)
        self.converter = Converter(
            self.tracer, SERVICE, options.app_id, settings.max_message_bytes, DLQ.name
        )
        # llm.requests: the router dead-letters what it cannot decode, once; this worker
        # skips (and counts) it, so the dead-letter topic holds each bad request once.
        self.requests_converter = Converter(
            self.tracer,
            SERVICE,
            options.app_id,
            settings.max_message_bytes,
            DLQ.name,
            dead_letter_rejected=False,
        )
        # Reading llm.dlq itself: a bad dead letter is logged and skipped, never looped.
        self.dlq_converter = Converter(
            self.tracer, SERVICE, options.app_id, settings.max_message_bytes, None
        )

        window_s = settings.metrics_window_s
        grace_s = options.window_grace_s
        if grace_s is None:
            grace_s = max(2.0, 2 * settings.sink_flush_s)
        retain_s = options.window_retain_s
        if retain_s is None:
            retain_s = max(60.0, 3 * window_s)
        self.tick_s = options.tick_s or min(1.0, window_s / 2)
        self.windows = WindowAccumulator(window_s, grace_s=grace_s, retain_s=retain_s)
        # Features events counted in a window and not acked yet, by window.
        self._held: dict[WindowKey, list[EventT[bytes]]] = {}
        # The features partition each window's group comes from (one per group).
        self._window_tp: dict[WindowKey, TP] = {}
        self._features_stream: StreamT[bytes] | None = None
        # Bad features records and unbuildable windows: a line per kind at a bounded rate.
        self._rejections = RejectionLog(log, SERVICE)

    # --- wiring ------------------------------------------------------------------------------

    def register(self) -> None:
        app, topic = self.app, self._topics
        app.agent(topic[REQUESTS.name], name="streams.requests")(self.consume_requests)
        app.agent(topic[RESPONSES.name], name="streams.responses")(self.consume_responses)
        app.agent(topic[self.features_topic_name], name="streams.windows")(self.consume_features)
        app.agent(topic[DLQ.name], name="streams.dead_letters")(self.consume_dead_letters)
        app.timer(self.tick_s, name="streams.emit_windows")(self.emit_due_windows)
        app.task(self.apply_retention)
        app.on_partitions_revoked.connect(self.on_partitions_revoked)

    def close(self) -> None:
        for writer in (
            self.requests_writer,
            self.responses_writer,
            self.windows_writer,
            self.dead_letters_writer,
        ):
            writer.close()
        self.reader.close()
        self.retention_reader.close()

    # --- record handlers (pure: they only fill the batch) ------------------------------------

    def on_request(self, request: PromptRequest, record: Record, span: Span, batch: Batch) -> None:
        if request.model:
            span.set_attribute("gen_ai.request.model", request.model)
        span.set_attribute("gen_ai.request.max_tokens", request.sampling.max_tokens)
        batch.rows.append(rows.request_row(request, len(record.value or b"")))

    def on_response(
        self, result: InferenceResult, record: Record, span: Span, batch: Batch
    ) -> None:
        record.verify(self.signing, InferenceResult)  # raises a Rejected: dead-lettered
        features = extract_features(result)
        span.set_attributes(
            tracing.genai_response_attributes(
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
                finish_reasons=[result.finish_reason],
                response_model=result.model,
            )
        )
        if result.model:
            span.set_attribute("gen_ai.request.model", result.model)
        if features.error_kind:  # the response's failure; processing it went fine
            span.set_attribute("llmops.response.error_kind", features.error_kind)
        batch.rows.append(
            rows.response_row(result, features, len(record.value or b""), self.text_policy)
        )
        batch.outgoing.append(
            Outgoing(
                self.features_topic_name,
                group_key_text(features.group).encode(),
                features.to_bytes(),
                json_headers("ResponseFeatures"),
            )
        )

    def on_dead_letter(self, letter: DeadLetter, record: Record, span: Span, batch: Batch) -> None:
        span.set_attribute("llmops.dead_letter.kind", letter.kind)
        batch.rows.append(rows.dead_letter_row(letter, self.text_policy))

    # --- storing, publishing, acking ---------------------------------------------------------

    def _batches(self, stream: StreamT[bytes]) -> AsyncIterator[Sequence[EventT[bytes]]]:
        # noack_take yields the buffered events themselves and leaves every ack to us.
        # (typed as yielding values: it yields events since faust-streaming 0.10)
        concrete = cast("faust.Stream[bytes]", stream)
        return cast(
            "AsyncIterator[Sequence[EventT[bytes]]]",
            concrete.noack_take(self.batch_size, within=self.flush_s),
        )

    async def _store(
        self, writer: TableWriter, converter: Converter, batch: Batch, topic: str
    ) -> None:
        """Insert the batch's rows (retrying while the store is down), then publish its
        records (retrying), with dead letters for the rows the store refused."""
        with tracing.batch_span(
            self.tracer,
            f"INSERT {writer.table}",
            batch.contexts,
            attributes={
                "db.system.name": "clickhouse",
                "db.operation.name": "INSERT",
                "db.collection.name": writer.table,
                "db.operation.batch.size": len(batch.rows),
                "messaging.destination.name": topic,
            },
        ):
            refused = await writer.write(batch.rows)
            await self._publish(converter.refused(batch, refused))

    async def _publish(self, outgoing: Sequence[Outgoing]) -> None:
        """Send every record and wait for the broker's acks; on failure send them all again
        (duplicates are absorbed downstream: every record carries its ids)."""
        attempt = 0
        while outgoing:
            try:
                # faust's producer itself: Topic.send adds per-record bookkeeping that costs
                # more than the send (measured: 500 records ~200 ms against ~40 ms).
                producer = self.app.producer
                futures = [
                    await producer.send(out.topic, out.key, out.value, None, None, out.headers)
                    for out in outgoing
                ]
                await asyncio.gather(*futures)
            except Exception as error:
                attempt += 1
                delay = self.backoff.delay(attempt, random.random())
                log.warning(
                    "publishing %d records failed (attempt %d, retry in %.1fs): %s",
                    len(outgoing),
                    attempt,
                    delay,
                    error,
                )
                await asyncio.sleep(delay)
            else:
                for topic, count in Counter(out.topic for out in outgoing).items():
                    metrics.count_produced(SERVICE, topic, count)
                return

    @staticmethod
    async def _ack(stream: StreamT[bytes], events: Iterable[EventT[bytes]]) -> None:
        for event in events:
            await stream.ack(event)

    async def _sink_loop(
        self,
        stream: StreamT[bytes],
        writer: TableWriter,
        converter: Converter,
        convert: Callable[[Sequence[Record]], Batch],
    ) -> None:
        """Batch -> rows + records -> stored -> published -> acked. Never acks earlier."""
        async for events in self._batches(stream):
            started = time.perf_counter()
            records = [to_record(e) for e in events]
            batch = convert(records)
            topic = records[0].topic if records else ""
            await self._store(writer, converter, batch, topic)
            await self._ack(stream, events)
            metrics.RECORDS_CONSUMED.labels(SERVICE, topic).inc(len(events))
            metrics.PROCESSING_SECONDS.labels(SERVICE, topic).observe(time.perf_counter() - started)

    # --- agents ------------------------------------------------------------------------------

    def convert_requests(self, records: Sequence[Record]) -> Batch:
        return self.requests_converter.convert(records, PromptRequest, self.on_request)

    def convert_responses(self, records: Sequence[Record]) -> Batch:
        return self.converter.convert(records, InferenceResult, self.on_response)

    def convert_dead_letters(self, records: Sequence[Record]) -> Batch:
        return self.dlq_converter.convert(records, DeadLetter, self.on_dead_letter)

    async def consume_requests(self, stream: StreamT[bytes]) -> None:
        await self._sink_loop(
            stream, self.requests_writer, self.requests_converter, self.convert_requests
        )

    async def consume_responses(self, stream: StreamT[bytes]) -> None:
        await self._sink_loop(stream, self.responses_writer, self.converter, self.convert_responses)

    async def consume_dead_letters(self, stream: StreamT[bytes]) -> None:
        await self._sink_loop(
            stream, self.dead_letters_writer, self.dlq_converter, self.convert_dead_letters
        )

    async def consume_features(self, stream: StreamT[bytes]) -> None:
        """Count each response in its window; its ack waits until the window is emitted."""
        self._features_stream = stream
        async for events in self._batches(stream):
            self.add_features(events, time.time())
            metrics.RECORDS_CONSUMED.labels(SERVICE, self.features_topic_name).inc(len(events))

    def add_features(self, events: Sequence[EventT[bytes]], now: float) -> None:
        for event in events:
            if event.message.generation_id != self.app.consumer_generation_id:
                # Fetched before a rebalance: faust sought back to the committed offset,
                # so this record comes again (unacked) if its partition is still ours.
                continue
            payload = event.message.value or b""
            try:
                features = ResponseFeatures.from_bytes(payload)
            except (ValueError, RecursionError) as error:
                # Nobody but this worker should write the topic, so there is no dead-letter
                # owner: skipped and counted, logged at a bounded rate.
                rejected = classify_decode_error(payload, error)
                self._skip_features(event, rejected.kind, rejected.reason)
                continue
            key = self.windows.add(features, now)
            if key is None:  # already counted in its window: nothing more to wait for
                event.ack()
                continue
            self._held.setdefault(key, []).append(event)
            self._window_tp[key] = event.message.tp

    def _skip_features(self, event: EventT[bytes], kind: str, reason: str) -> None:
        tp = event.message.tp
        self._rejections.rejected(
            kind,
            reason,
            # One token, like every rejection line (the features topic has no dead letters).
            f"{tp.topic}[{tp.partition}]@{event.message.offset}",
        )
        metrics.count_skipped(SERVICE, tp.topic, kind)
        event.ack()

    async def emit_due_windows(self) -> None:
        """Emit closed windows: rows first, then llm.metrics, then ack what they counted."""
        await self._seed_windows()
        now = time.time()
        due = self.windows.due(now)
        if due:
            held = [event for key, _ in due for event in self._held.pop(key, [])]
            await self._emit(due, held)
            stream = self._features_stream
            if stream is not None:
                await self._ack(stream, held)
        await self._drop_unbuildable()
        for key in self.windows.retire(now):
            self._window_tp.pop(key, None)
            self._held.pop(key, None)

    async def _drop_unbuildable(self) -> None:
        """A window whose aggregate cannot be built is dropped, never retried: it would fail
        again on every tick (and after every restart) and hold its partition's offsets."""
        for key, reason in self.windows.unbuildable():
            self._rejections.rejected(
                "unbuildable_window",
                reason,
                f"window@{key.start_ms}:{key.group_text}",
                level=logging.ERROR,
            )
            metrics.count_skipped(SERVICE, METRICS.name, "unbuildable")
            stream = self._features_stream
            held = self._held.pop(key, [])
            if stream is not None:
                await self._ack(stream, held)

    async def _seed_windows(self) -> None:
        """Complete windows first seen after they closed with what `responses` holds."""
        keys = self.windows.needs_seed()
        if not keys:
            return
        sql, parameters = backfill.stored_responses_query(keys, self.windows.length_ms)
        with self.tracer.start_as_current_span(
            "SELECT responses", attributes={"llmops.windows": len(keys)}
        ):
            stored = self._stored_features(await self.reader.rows(sql, parameters))
        # Windows created while the query ran were not in it: they stay unseeded for now.
        by_key: dict[WindowKey, list[ResponseFeatures]] = {key: [] for key in keys}
        for features in stored:
            key = self.windows.key_for(features)
            if key in by_key:
                by_key[key].append(features)
        added = sum(self.windows.seed(key, found) for key, found in by_key.items())
        log.info("seeded %d late windows with %d stored responses", len(keys), added)

    def _stored_features(self, found: Iterable[Mapping[str, Any]]) -> list[ResponseFeatures]:
        """The stored rows as features; a row outside their bounds is left out (logged at a
        bounded rate) rather than stopping the timer that seeds and emits every window."""
        stored: list[ResponseFeatures] = []
        for row in found:
            try:
                stored.append(backfill.features_from_row(row))
            except ValueError as error:
                self._rejections.rejected("unusable_stored_response", str(error), "a seed row")
        return stored

    async def _emit(
        self, due: Sequence[tuple[WindowKey, MetricWindow]], held: Sequence[EventT[bytes]]
    ) -> None:
        contexts = [extract_context(message_headers(e)) for e in held[:MAX_LINKS]]
        with tracing.batch_span(
            self.tracer,
            f"emit {METRICS.name}",
            contexts,
            attributes={"llmops.windows": len(due), "llmops.responses": len(held)},
        ):
            refused = await self.windows_writer.write([rows.metric_window_row(w) for _, w in due])
            self._log_refused_windows(due, refused)
            withheld = {failure.index for failure in refused}
            await self._publish(
                [
                    Outgoing(
                        METRICS.name,
                        key.group_text.encode(),
                        window.to_bytes(),
                        json_headers("MetricWindow"),
                    )
                    for i, (key, window) in enumerate(due)
                    if i not in withheld
                ]
            )

    @staticmethod
    def _log_refused_windows(
        due: Sequence[tuple[WindowKey, MetricWindow]], refused: Sequence[Unstorable[Any]]
    ) -> None:
        """A window the store cannot hold is dropped (its responses are stored and acked):
        it has no record of its own to dead-letter, and retrying it would stop every window."""
        for failure in refused:
            key, _ = due[failure.index]
            metrics.count_skipped(SERVICE, METRICS.name, "unstorable")
            log.error("window %s refused by the store, dropped: %s", key, failure.reason)

    async def apply_retention(self) -> None:
        """Set the text tables' TTL to Settings.retention_days (retried until they exist)."""
        days = self.settings.retention_days
        applied = await self.retention_reader.call(
            "setting the retention TTL",
            lambda client: retention.apply_retention(client, days),
        )
        if applied:
            log.info("retention of text tables set to %s: %s", days or "forever", applied)

    def on_partitions_revoked(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """Drop windows of features partitions that move away; their owner replays them.

        faust sends `(sender, revoked)`. With the eager protocol every partition is revoked
        at each rebalance and faust then seeks the ones it keeps back to their committed
        offsets, so the unacked responses of the dropped windows come again.
        """
        revoked: set[TP] = set(args[0]) if args else set()
        gone = [key for key, tp in self._window_tp.items() if tp in revoked]
        self.windows.discard(gone)
        for key in gone:
            self._window_tp.pop(key, None)
            self._held.pop(key, None)
        if gone:
            log.info("dropped %d windows of revoked partitions", len(gone))


def build_worker(settings: Settings, options: WorkerOptions | None = None) -> MetricsWorker:
    """A faust app with the worker's agents registered (not started); the app is `.app`."""
    options = options or WorkerOptions()
    conf = faust_settings(settings, options)
    # faust creates its data directory without parents.
    Path(conf["datadir"]).mkdir(parents=True, exist_ok=True)
    app = faust.App(options.app_id, **conf)
    worker = MetricsWorker(app, settings, options)
    worker.register()
    return worker


def create_app(settings: Settings, options: WorkerOptions | None = None) -> faust.App:
    """The worker's faust app, ready for `faust.Worker(app).execute_from_commandline()`."""
    return build_worker(settings, options).app
