"""The windows agent: response features -> tumbling windows -> `metric_windows` + llm.metrics.

A features record is acked only when the window it fell into has been emitted (row
inserted and MetricWindow published); a window drops its records unacked when its
partition is revoked, and the new owner rebuilds it from them. A window first seen after
it closed may have been emitted already: before it is emitted again, it is completed from
the `responses` table (rows are inserted before features are published), so its new
aggregate is the union and its row, keyed by window start + group, replaces the old one.
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
from schemas import MetricWindow
from schemas.topics import METRICS
from streams import SERVICE, backfill, rows
from streams.agents.delivery import Delivery
from streams.features import ResponseFeatures
from streams.isolate import Unstorable
from streams.records import Outgoing, json_headers, message_headers
from streams.sink import Reader, TableWriter
from streams.windows import WindowAccumulator, WindowKey

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
    ) -> None:
        self.app = app
        self.features_topic = features_topic
        self.accumulator = accumulator
        self.tick_s = tick_s
        self.writer = writer
        self.reader = reader
        self.delivery = delivery
        self.tracer = tracer
        # Features events counted in a window and not acked yet, by window.
        self._held: dict[WindowKey, list[EventT[bytes]]] = {}
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
                features = ResponseFeatures.from_bytes(payload)
            except (ValueError, RecursionError) as error:
                # Nobody but this worker should write the topic, so there is no dead-letter
                # owner: skipped and counted, logged at a bounded rate.
                rejected = classify_decode_error(payload, error)
                self._skip(event, rejected.kind, rejected.reason)
                continue
            key = self.accumulator.add(features, now)
            if key is None:  # already counted in its window: nothing more to wait for
                event.ack()
                continue
            self._held.setdefault(key, []).append(event)
            self._window_tp[key] = event.message.tp

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

    async def emit_due_windows(self) -> None:
        """Emit closed windows: rows first, then llm.metrics, then ack what they counted."""
        await self._seed_windows()
        now = time.time()
        due = self.accumulator.due(now)
        if due:
            held = [event for key, _ in due for event in self._held.pop(key, [])]
            await self._emit(due, held)
            await self._ack(held)
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
            await self._ack(self._held.pop(key, []))

    async def _seed_windows(self) -> None:
        """Complete windows first seen after they closed with what `responses` holds."""
        keys = self.accumulator.needs_seed()
        if not keys:
            return
        sql, parameters = backfill.stored_responses_query(keys, self.accumulator.length_ms)
        with self.tracer.start_as_current_span(
            "SELECT responses", attributes=llmops_attributes(windows=len(keys))
        ):
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

    async def _emit(
        self, due: Sequence[tuple[WindowKey, MetricWindow]], held: Sequence[EventT[bytes]]
    ) -> None:
        contexts = [extract_context(message_headers(e)) for e in held[:MAX_LINKS]]
        with batch_span(
            self.tracer,
            f"emit {METRICS.name}",
            contexts,
            attributes=llmops_attributes(windows=len(due), responses=len(held)),
        ):
            refused = await self.writer.write([rows.metric_window_row(w) for _, w in due])
            _log_refused_windows(due, refused)
            withheld = {failure.index for failure in refused}
            await self.delivery.publish(
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

    def on_partitions_revoked(self, sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        """Drop windows of features partitions that move away; their owner replays them.

        faust sends `(sender, revoked)`. With the eager protocol every partition is revoked
        at each rebalance and faust then seeks the ones it keeps back to their committed
        offsets, so the unacked responses of the dropped windows come again.
        """
        revoked: set[TP] = set(args[0]) if args else set()
        gone = [key for key, tp in self._window_tp.items() if tp in revoked]
        self.accumulator.discard(gone)
        for key in gone:
            self._window_tp.pop(key, None)
            self._held.pop(key, None)
        if gone:
            log.info("dropped %d windows of revoked partitions", len(gone))


def _log_refused_windows(
    due: Sequence[tuple[WindowKey, MetricWindow]], refused: Sequence[Unstorable[Any]]
) -> None:
    """A window the store cannot hold is dropped (its responses are stored and acked): it has
    no record of its own to dead-letter, and retrying it would stop every window."""
    for failure in refused:
        key, _ = due[failure.index]
        metrics.count_skipped(SERVICE, METRICS.name, "unstorable")
        log.error("window %s refused by the store, dropped: %s", key, failure.reason)
