"""The windows agent: response features -> tumbling windows -> `metric_windows` and
`quality_windows` + llm.metrics (MetricWindow and QualityWindow records).

A features record is a packed `ResponseFeaturesBatch` (one per window group per sink batch,
streams/repartition.py) or a single `ResponseFeatures` (by its event type header, or by its
shape when it has none). It is acked only when every window its responses fell into has
been emitted (rows inserted, MetricWindow and QualityWindows published) or dropped as
unbuildable: each record waits on the set of its windows, and is acked once, when that set
empties. A window drops its records unacked when its partition is revoked (and with them
every other window they wait on), and the new owner rebuilds it from them. A window first
seen after it closed may have been emitted already: before it is emitted again, it is
completed from the `responses` table (rows are inserted before features are published),
so its new aggregate is the union and its row, keyed by window start + group, replaces the
old one (and each quality row, keyed by window start + group + segment, the old one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.types import TP, EventT, StreamT
from opentelemetry.trace import Tracer

from llmops.kafka.deadletter import classify_decode_error
from llmops.telemetry import metrics
from llmops.telemetry.conventions import llmops_attributes
from llmops.telemetry.propagation import extract_context
from llmops.telemetry.ratelog import RejectionLog
from llmops.telemetry.spans import batch_span
from schemas import QualityWindow
from schemas.topics import METRICS
from streams import SERVICE, backfill, rows
from streams.agents.delivery import Delivery
from streams.features import ResponseFeatures, ResponseFeaturesBatch
from streams.isolate import Unstorable
from streams.records import Outgoing, json_headers, message_headers
from streams.repartition import is_packed, looks_packed
from streams.sink import Reader, TableWriter
from streams.windows import DueWindow, WindowAccumulator, WindowKey

log = logging.getLogger(__name__)

# Span links kept per emitted batch of windows (the SDK's default link limit).
MAX_LINKS = 128


class WindowsAgent:
    """Counts each response in its window; emits closed windows on a timer."""

    def __init__(
        self,
        app: faust.App,
        features_topic: str,
        accumulator: WindowAccumulator,
        tick_s: float,
        writer: TableWriter,
        reader: Reader,
        delivery: Delivery,
        tracer: Tracer,
        quality_writer: TableWriter | None = None,
        segment_attributes: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.features_topic = features_topic
        self.accumulator = accumulator
        self.tick_s = tick_s
        self.writer = writer
        self.reader = reader
        self.delivery = delivery
        self.tracer = tracer
        # quality_windows rows; None: the quality aggregates are published only.
        self.quality_writer = quality_writer
        # The declared segment attributes, read back from stored responses when seeding.
        self.segment_attributes = tuple(segment_attributes)
        # Whether `responses` has the embedding column (looked up until it has).
        self._embedding_stored = False
        # Features events counted in a window and not acked yet, by window (once each).
        self._held: dict[WindowKey, list[EventT[bytes]]] = {}
        # Each such event (by identity) and the windows it still waits on; acked when empty.
        self._waiting: dict[int, tuple[EventT[bytes], set[WindowKey]]] = {}
        # The features partition each window's group comes from (one per group).
        self._window_tp: dict[WindowKey, TP] = {}
        self._stream: StreamT[bytes] | None = None
        # Bad features records and unbuildable windows: a line per kind at a bounded rate.
        self._rejections = RejectionLog(log, SERVICE)

    def register(self, app: faust.App) -> None:
        app.agent(app.topic(self.features_topic), name="streams.windows")(self.consume)
        app.timer(self.tick_s, name="streams.emit_windows")(self.emit_due_windows)
        app.on_partitions_revoked.connect(self.on_partitions_revoked)

    def close(self) -> None:
        self.writer.close()
        if self.quality_writer is not None:
            self.quality_writer.close()
        self.reader.close()

    async def consume(self, stream: StreamT[bytes]) -> None:
        """Count each response in its window; its ack waits until the window is emitted."""
        self._stream = stream
        async for events in self.delivery.batches(stream):
            self.add_features(events, time.time())
            metrics.RECORDS_CONSUMED.labels(SERVICE, self.features_topic).inc(len(events))

    def add_features(self, events: Sequence[EventT[bytes]], now: float) -> None:
        for event in events:
            if event.message.generation_id != self.app.consumer_generation_id:
                # Fetched before a rebalance: faust sought back to the committed offset,
                # so this record comes again (unacked) if its partition is still ours.
                continue
            payload = event.message.value or b""
            try:
                members = _decode(event, payload)
            except (ValueError, RecursionError) as error:
                # Nobody but this worker should write the topic, so there is no dead-letter
                # owner: skipped and counted, logged at a bounded rate.
                rejected = classify_decode_error(payload, error)
                self._skip(event, rejected.kind, rejected.reason)
                continue
            windows: set[WindowKey] = set()
            for features in members:
                key = self.accumulator.add(features, now)
                if key is None:  # already counted in its window: nothing to wait for
                    continue
                if key not in windows:
                    windows.add(key)
                    self._held.setdefault(key, []).append(event)
                self._window_tp[key] = event.message.tp
            if windows:
                self._waiting[id(event)] = (event, windows)
            else:
                event.ack()

    def _skip(self, event: EventT[bytes], kind: str, reason: str) -> None:
        tp = event.message.tp
        self._rejections.rejected(
            kind,
            reason,
            # One token, like every rejection line (the features topic has no dead letters).
            f"{tp.topic}[{tp.partition}]@{event.message.offset}",
        )
        metrics.count_skipped(SERVICE, tp.topic, kind)
        event.ack()

    async def _ack(self, held: Iterable[EventT[bytes]]) -> None:
        if self._stream is not None:
            await self.delivery.ack(self._stream, held)

    def _release(self, key: WindowKey) -> list[EventT[bytes]]:
        """Window `key` is emitted or dropped as unbuildable: the events it held that wait
        on no other window now (each returned once, then forgotten)."""
        done: list[EventT[bytes]] = []
        for event in self._held.pop(key, []):
            waiting = self._waiting.get(id(event))
            if waiting is None:  # its partition was revoked: never acked here
                continue
            waiting[1].discard(key)
            if not waiting[1]:
                del self._waiting[id(event)]
                done.append(event)
        return done

    async def emit_due_windows(self) -> None:
        """Emit closed windows: rows first, then llm.metrics, then ack what they counted."""
        await self._seed_windows()
        await self.emit_due(time.time())

    async def emit_due(self, now: float) -> None:
        """Emit the windows closed at `now`, ack the events that wait on no other window,
        drop the unbuildable ones and retire the old ones."""
        due = self.accumulator.due_windows(now)
        if due:
            held = list({id(e): e for w in due for e in self._held.get(w.key, [])}.values())
            await self._emit(due, held)
            await self._ack([event for window in due for event in self._release(window.key)])
        await self._drop_unbuildable()
        for key in self.accumulator.retire(now):
            self._window_tp.pop(key, None)
            self._held.pop(key, None)

    async def _drop_unbuildable(self) -> None:
        """A window whose aggregate cannot be built is dropped, never retried: it would fail
        again on every tick (and after every restart) and hold its partition's offsets."""
        for key, reason in self.accumulator.unbuildable():
            self._rejections.rejected(
                "unbuildable_window",
                reason,
                f"window@{key.start_ms}:{key.group_text}",
                level=logging.ERROR,
            )
            metrics.count_skipped(SERVICE, METRICS.name, "unbuildable")
            await self._ack(self._release(key))

    async def _seed_windows(self) -> None:
        """Complete windows first seen after they closed with what `responses` holds."""
        keys = self.accumulator.needs_seed()
        if not keys:
            return
        with self.tracer.start_as_current_span(
            "SELECT responses", attributes=llmops_attributes(windows=len(keys))
        ):
            if not self._embedding_stored:
                found = await self.reader.rows(backfill.EMBEDDING_COLUMN_QUERY, {})
                self._embedding_stored = backfill.has_embedding_column(found)
            sql, parameters = backfill.stored_responses_query(
                keys, self.accumulator.length_ms, self.segment_attributes, self._embedding_stored
            )
            stored = self._stored_features(await self.reader.rows(sql, parameters))
        # Windows created while the query ran were not in it: they stay unseeded for now.
        by_key: dict[WindowKey, list[ResponseFeatures]] = {key: [] for key in keys}
        for features in stored:
            key = self.accumulator.key_for(features)
            if key in by_key:
                by_key[key].append(features)
        added = sum(self.accumulator.seed(key, found) for key, found in by_key.items())
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

    async def _emit(self, due: Sequence[DueWindow], held: Sequence[EventT[bytes]]) -> None:
        contexts = [extract_context(message_headers(e)) for e in held[:MAX_LINKS]]
        with batch_span(
            self.tracer,
            f"emit {METRICS.name}",
            contexts,
            attributes=llmops_attributes(windows=len(due), responses=len(held)),
        ):
            refused = await self.writer.write([rows.metric_window_row(w.metric) for w in due])
            _log_refused_windows(due, refused)
            withheld = {failure.index for failure in refused}
            quality = [(w.key, q) for w in due for q in w.quality]
            stored_quality = await self._write_quality(quality)
            await self.delivery.publish(
                [
                    Outgoing(
                        METRICS.name,
                        window.key.group_text.encode(),
                        window.metric.to_bytes(),
                        json_headers("MetricWindow"),
                    )
                    for i, window in enumerate(due)
                    if i not in withheld
                ]
                + [
                    Outgoing(
                        METRICS.name,
                        key.group_text.encode(),
                        window.to_bytes(),
                        json_headers("QualityWindow"),
                    )
                    for key, window in stored_quality
                ]
            )

    async def _write_quality(
        self, quality: Sequence[tuple[WindowKey, QualityWindow]]
    ) -> list[tuple[WindowKey, QualityWindow]]:
        """Insert the quality rows; the ones the store holds (all, with no quality table)."""
        if self.quality_writer is None or not quality:
            return list(quality)
        refused = await self.quality_writer.write([rows.quality_window_row(q) for _, q in quality])
        for failure in refused:
            key, window = quality[failure.index]
            metrics.count_skipped(SERVICE, METRICS.name, "unstorable")
            log.error(
                "quality window %s [%s] refused by the store, dropped: %s",
                key,
                window.segment,
                failure.reason,
            )
        withheld = {failure.index for failure in refused}
        return [q for i, q in enumerate(quality) if i not in withheld]

    def on_partitions_revoked(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """Drop windows of features partitions that move away; their owner replays them.

        faust sends `(sender, revoked)`. With the eager protocol every partition is revoked
        at each rebalance and faust then seeks the ones it keeps back to their committed
        offsets, so the unacked responses of the dropped windows come again.
        """
        revoked: set[TP] = set(args[0]) if args else set()
        gone = [key for key, tp in self._window_tp.items() if tp in revoked]
        self.accumulator.discard(gone)
        # Their events are never acked here, even if some of their windows stay (a record
        # whose members span groups of several partitions): the new owner replays them.
        lost = {id(e) for key in gone for e in self._held.get(key, [])}
        lost.update(i for i, (e, _) in self._waiting.items() if e.message.tp in revoked)
        for i in lost:
            self._waiting.pop(i, None)
        for key in gone:
            self._window_tp.pop(key, None)
            self._held.pop(key, None)
        if gone:
            log.info("dropped %d windows of revoked partitions", len(gone))


def _decode(event: EventT[bytes], payload: bytes) -> list[ResponseFeatures]:
    """The responses' features a record carries: a packed record's members, or one."""
    packed = is_packed(message_headers(event))
    if packed is None:
        packed = looks_packed(payload)
    if packed:
        return ResponseFeaturesBatch.from_bytes(payload).features
    return [ResponseFeatures.from_bytes(payload)]


def _log_refused_windows(due: Sequence[DueWindow], refused: Sequence[Unstorable[Any]]) -> None:
    """A window the store cannot hold is dropped (its responses are stored and acked): it has
    no record of its own to dead-letter, and retrying it would stop every window."""
    for failure in refused:
        key = due[failure.index].key
        metrics.count_skipped(SERVICE, METRICS.name, "unstorable")
        log.error("window %s refused by the store, dropped: %s", key, failure.reason)
