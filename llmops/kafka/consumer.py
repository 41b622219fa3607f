"""One consumption loop with at-least-once commits, for every service.

Every service consumes the same way: decode a record, hand it to the service's handler, and
commit its offset only once everything the handler produced for it is acknowledged by the
broker. Bad input is dead-lettered by the loop itself, so no handler can stop a consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from llmops.kafka.config import BusConfig
from llmops.kafka.deadletter import Rejected, rejection_for
from llmops.kafka.fetchwait import AdaptiveWait, FetchWaitTuner
from llmops.kafka.offsets import OffsetTracker
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from llmops.telemetry import metrics
from llmops.telemetry.ratelog import RejectionLog
from schemas.topics import DLQ

if TYPE_CHECKING:
    from llmops.config import Settings

log = logging.getLogger(__name__)

# Tansu (and small clusters) join groups in about session_timeout/2: keep it short.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
# On shutdown, in-flight work gets this long to finish before its offsets are left uncommitted.
DRAIN_TIMEOUT_S = 30.0
# At capacity, how long the loop waits for a slot before it pauses its partitions and polls.
FULL_WAIT_S = 0.5
# A poll ends after this long without records (or after the fetch wait, when longer).
POLL_MS = 100
# A stopping consumer's last commit gets this long: with the broker gone aiokafka retries it
# forever, and not committing only means consuming those records again (at-least-once).
FINAL_COMMIT_S = 5.0


# A handler does the quick part of its work inline (decode, decide, enqueue sends) and
# returns what must complete before the record counts as done: delivery futures, or a task
# that generates and replies. None means nothing is pending.
Handler = Callable[[Record], Awaitable[Awaitable[Any] | None]]
RejectHook = Callable[[Record, Rejected], Awaitable[Sequence[Awaitable[Any]]]]


@dataclass
class ConsumerConfig:
    topics: Sequence[str]
    group_id: str
    service: str
    max_in_flight: int = 1000
    max_message_bytes: int = 1_048_576
    commit_interval_s: float = 0.2
    fetch_max_wait_ms: int = 20
    # Quiet this long, the fetch wait grows toward `fetch_idle_wait_ms` (llmops/kafka/fetchwait.py).
    fetch_idle_wait_ms: int = 500
    fetch_quiet_after_s: float = 0.5
    max_poll_records: int = 500
    auto_offset_reset: str = "earliest"
    dlq_topic: str = DLQ.name
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        topics: Sequence[str],
        group_id: str,
        service: str,
        **options: Any,
    ) -> ConsumerConfig:
        """A service's consumer: message size, commit interval and fetch waits of `settings`
        (`options`: the other fields)."""
        return cls(
            topics=topics,
            group_id=group_id,
            service=service,
            max_message_bytes=settings.max_message_bytes,
            commit_interval_s=settings.commit_interval_s,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            fetch_idle_wait_ms=settings.fetch_idle_wait_ms,
            fetch_quiet_after_s=settings.fetch_quiet_after_s,
            **options,
        )


class LoopCompanion(Protocol):
    """Work that runs beside a consumer loop for as long as the loop runs (a pool's heartbeat,
    the router's control plane): handed to the loop when it is built, never patched on."""

    async def on_loop_start(self, loop: ConsumerLoop) -> None:
        """Before the loop subscribes; may wait, bounded, for what consuming needs first."""

    def on_loop_stopping(self) -> None:
        """The loop was asked to stop: its in-flight work drains now."""

    async def on_loop_end(self) -> None:
        """After the loop's final commit (also when it failed)."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._loop.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("%s assigned %d partitions", self._loop.config.group_id, len(assigned))


class ConsumerLoop:
    """Consume, hand each record to `handler`, dead-letter bad input, commit what is done."""

    def __init__(
        self,
        bus: BusConfig,
        config: ConsumerConfig,
        handler: Handler,
        producer: Producer,
        on_reject: RejectHook | None = None,
        companions: Sequence[LoopCompanion] = (),
    ) -> None:
        self.config = config
        self._bus = bus
        self._handler = handler
        self._producer = producer
        self._on_reject = on_reject
        self._companions = tuple(companions)
        self._tracker = OffsetTracker()
        self._pending: set[asyncio.Future[Any]] = set()
        self._room = asyncio.Event()
        self._room.set()
        self._paused = False
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bus.bootstrap_servers,
            client_id=f"{bus.client_id}-{config.service}",
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset=config.auto_offset_reset,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            max_poll_records=config.max_poll_records,
            **bus.security.client_kwargs(),
            **config.extra,
        )
        self.records_done = 0
        self.dead_letters = 0
        self._rejections = RejectionLog(log, config.service)
        self._consumed: dict[str, Any] = {}  # topic -> its records_consumed counter
        metrics.IN_FLIGHT.labels(config.service).set_function(self._tracker.in_flight)

    @property
    def in_flight(self) -> int:
        return self._tracker.in_flight()

    def stop(self) -> None:
        for companion in self._companions:
            companion.on_loop_stopping()
        self._stopping.set()

    async def run(self) -> None:
        """Run until `stop()`; then drain in-flight work and make a final commit. The
        companions start first and end last, in reverse order."""
        started: list[LoopCompanion] = []
        try:
            for companion in self._companions:
                started.append(companion)  # before its start: a start cut short still ends
                await companion.on_loop_start(self)
            await self._consume()
        finally:
            for companion in reversed(started):
                await companion.on_loop_end()

    async def _consume(self) -> None:
        self.consumer.subscribe(list(self.config.topics), listener=_Rebalance(self))
        await self.consumer.start()
        tuner = FetchWaitTuner(
            self.consumer,
            AdaptiveWait(
                self.config.fetch_max_wait_ms,
                self.config.fetch_idle_wait_ms,
                self.config.fetch_quiet_after_s,
            ),
            time.monotonic,
        )
        committer = asyncio.create_task(self._commit_periodically())
        try:
            while not self._stopping.is_set():
                if self._fatal is not None:
                    raise self._fatal
                await self._wait_for_room()
                # Never more than there is room for: the rest stays in the client's buffer.
                room = max(self.config.max_in_flight - self._tracker.in_flight(), 1)
                # A quiet consumer wakes as rarely as it fetches (records end a poll at once).
                poll_ms = max(POLL_MS, tuner.wait_ms)
                batches = await self.consumer.getmany(timeout_ms=poll_ms, max_records=room)
                # Work still in flight counts as traffic: its follow-ups should not wait.
                tuner.after_poll(
                    sum(len(records) for records in batches.values()) + self._tracker.in_flight()
                )
                for raw in (raw for records in batches.values() for raw in records):
                    if not await self._take(raw):
                        break
            await self._drain()
        finally:
            committer.cancel()
            try:
                async with asyncio.timeout(FINAL_COMMIT_S):
                    await self._commit()
            except TimeoutError:
                log.warning(
                    "%s: last commit not acknowledged in %gs (broker unreachable); "
                    "what it covered will be consumed again",
                    self.config.group_id,
                    FINAL_COMMIT_S,
                )
            finally:
                await self._stop_consumer()
        if self._fatal is not None:
            raise self._fatal

    async def _stop_consumer(self) -> None:
        """aiokafka's stop re-raises the CancelledError of a fetch it cuts short while that
        fetch waits to retry (the broker gone): not a cancel of ours, so not ended as one."""
        try:
            await self.consumer.stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            log.warning("%s: stopped with a fetch cut short", self.config.group_id)

    async def _wait_for_room(self) -> None:
        """Backpressure: while the handler's work is at capacity, nothing more is taken.

        A slot usually frees within moments, so the partitions keep fetching meanwhile: what
        arrives waits in the client's buffer (not taken, not committed) and the freed slot
        gets it at once. Pausing at once would drop the fetch in flight and cost a broker
        round trip per freed slot. Still full after a while, the partitions are paused, so the
        loop can keep polling (max_poll_interval; heartbeats run on their own) without
        taking records, and sees stop().
        """
        if self._tracker.in_flight() >= self.config.max_in_flight:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), timeout=FULL_WAIT_S)
        full = self._tracker.in_flight() >= self.config.max_in_flight
        if full and not self._paused:
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True
        elif not full and self._paused:
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False

    async def _take(self, raw: ConsumerRecord[bytes, bytes]) -> bool:
        """Dispatch a fetched record once there is room for it; False if stopping first."""
        while self._tracker.in_flight() >= self.config.max_in_flight:
            if self._stopping.is_set():
                return False
            await self._wait_for_room()
        await self._dispatch(Record.from_consumer_record(raw))
        return True

    async def _dispatch(self, record: Record) -> None:
        self._tracker.start(record.topic, record.partition, record.offset)
        consumed = self._consumed.get(record.topic)
        if consumed is None:  # the labelled child once per topic, not a lookup per record
            consumed = self._consumed[record.topic] = metrics.RECORDS_CONSUMED.labels(
                self.config.service, record.topic
            )
        consumed.inc()
        try:
            pending = await self._handler(record)
        except Exception as exc:  # bad input or a handler bug: dead-lettered, never fatal
            rejected, bug = rejection_for(exc)
            pending = self._reject(record, rejected, bug)
        self._track(record, pending)

    def _reject(
        self, record: Record, rejected: Rejected, bug: Exception | None = None
    ) -> Awaitable[Any]:
        # Bounded: one line per kind per interval (a handler bug's traceback included once).
        self._rejections.failed(rejected.kind, rejected.reason, record.where, bug)
        return asyncio.ensure_future(self._send_rejection(record, rejected))

    async def _send_rejection(self, record: Record, rejected: Rejected) -> None:
        self.dead_letters += 1
        metrics.count_dead_letter(self.config.service, rejected.kind)
        letter = record.dead_letter(rejected, self.config.service)
        acks: list[Awaitable[Any]] = [
            await self._producer.send_event(self.config.dlq_topic, letter, key=record.topic)
        ]
        if self._on_reject is not None:
            acks.extend(await self._on_reject(record, rejected))
        await asyncio.gather(*acks)

    def _track(self, record: Record, pending: Awaitable[Any] | None) -> None:
        if pending is None:
            self._finish(record)
            return
        future = asyncio.ensure_future(pending)
        self._pending.add(future)

        def done(fut: asyncio.Future[Any]) -> None:
            self._pending.discard(fut)
            if fut.cancelled():
                return
            error = fut.exception()
            if error is not None:
                # Output not acknowledged: never commit past this record. Stop, so the
                # supervisor restarts us and the record is consumed again.
                log.error(
                    "output for %s[%d]@%d failed: %r",
                    record.topic,
                    record.partition,
                    record.offset,
                    error,
                )
                self._fatal = self._fatal or error
                self._stopping.set()
                return
            self._finish(record)

        future.add_done_callback(done)

    def _finish(self, record: Record) -> None:
        self._tracker.finish(record.topic, record.partition, record.offset)
        self.records_done += 1
        if not self._room.is_set() and self._tracker.in_flight() < self.config.max_in_flight:
            self._room.set()

    async def _commit(self) -> None:
        offsets = self._tracker.committable()
        if not offsets:
            return
        assigned = self.consumer.assignment()
        commit = {
            TopicPartition(t, p): o
            for (t, p), o in offsets.items()
            if TopicPartition(t, p) in assigned
        }
        if not commit:
            return
        await self.consumer.commit(commit)
        self._tracker.mark_committed({(tp.topic, tp.partition): o for tp, o in commit.items()})

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.commit_interval_s)
            try:
                await self._commit()
            except Exception:  # a failed commit is retried next tick; work is not lost
                log.warning("commit failed; retrying", exc_info=True)

    async def _drain(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=DRAIN_TIMEOUT_S)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            await self._commit()
        except Exception:
            log.warning("commit on revoke failed", exc_info=True)
        for tp in revoked:
            self._tracker.forget(tp.topic, tp.partition)
