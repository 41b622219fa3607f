"""Follow a whole topic from its beginning, without a consumer group: state topics.

A reader of a state topic (pool heartbeats, the prompt registry) needs every partition and
every key, not a share of them, so it assigns all partitions itself and commits nothing.
On Kafka such topics are compacted (the newest record per key survives); on Tansu nothing is
compacted, and reading the history just replays older states first.

`caught_up` is set once the reader has reached each partition's fetch high watermark as it
was when first seen (ListOffsets LATEST is wrong on Tansu, fetch high watermarks are right).
`on_poll`, when given, is told after every poll once caught up how far the topic is read: the
time of the oldest of the partitions' last fetch answers, when every record they held has
been delivered (a reader judging how old the newest state is must know how current it is).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from llmops.kafka.fetchwait import AdaptiveWait, FetchWaitTuner
from llmops.kafka.record import Record
from llmops.kafka.security import PLAINTEXT, KafkaSecurity
from llmops.telemetry.ratelog import RejectionLog

log = logging.getLogger(__name__)
POLL_MS = 200
MIN_POLL_MS = 20
# A state topic's records come one at a time (a heartbeat a second), not in streams: the wait
# grows fast after each (twice the quiet time), as few fetches per record as can be.
STATE_WAIT_SHARE = 2.0


class TopicTail:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        on_record: Callable[[Record], None],
        *,
        client_id: str = "llmops-tail",
        fetch_max_wait_ms: int = 20,
        fetch_idle_wait_ms: int = 0,
        fetch_quiet_after_s: float = 0.0,
        on_poll: Callable[[datetime], None] | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        """`fetch_idle_wait_ms` above `fetch_max_wait_ms`: the wait adapts to traffic
        (llmops/kafka/fetchwait.py); a state topic written once a second needs no grace, so
        `fetch_quiet_after_s` defaults to none. `security`: the caller's (a service passes its
        settings'), PLAINTEXT by default."""
        self.topic = topic
        self._on_record = on_record
        self._on_poll = on_poll
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms,
            **security.client_kwargs(),
        )
        self.caught_up = asyncio.Event()
        self.records = 0
        self._stopping = asyncio.Event()
        self._targets: dict[TopicPartition, int] = {}
        self._rejections = RejectionLog(log, client_id)
        self._wait = AdaptiveWait(
            fetch_max_wait_ms, fetch_idle_wait_ms, fetch_quiet_after_s, share=STATE_WAIT_SHARE
        )

    def stop(self) -> None:
        self._stopping.set()

    async def _partitions(self) -> list[TopicPartition]:
        parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            await self._consumer.topics()  # refresh metadata
            parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            raise LookupError(f"topic {self.topic} does not exist")
        return [TopicPartition(self.topic, p) for p in sorted(parts)]

    async def run(self) -> None:
        """Read until `stop()`; callbacks run in order, one record at a time."""
        await self._consumer.start()
        try:
            partitions = await self._partitions()
            self._consumer.assign(partitions)
            await self._consumer.seek_to_beginning(*partitions)
            tuner = FetchWaitTuner(self._consumer, self._wait, time.monotonic)
            while not self._stopping.is_set():
                # Polls end soon after a short fetch, so a quiet topic's wait grows at once.
                poll_ms = min(POLL_MS, max(4 * tuner.wait_ms, MIN_POLL_MS))
                batches = await self._consumer.getmany(timeout_ms=poll_ms)
                taken = 0
                for raws in batches.values():
                    for raw in raws:
                        taken += 1
                        self.records += 1
                        self._deliver(Record.from_consumer_record(raw))
                # Catching up on the history counts as traffic: it must end quickly.
                tuner.after_poll(taken if self.caught_up.is_set() else max(taken, 1))
                if not self.caught_up.is_set() and await self._reached_end(partitions):
                    self.caught_up.set()
                if self._on_poll is not None and self.caught_up.is_set():
                    read_at = await self._read_up_to(partitions)
                    if read_at is not None:
                        self._on_poll(read_at)
        finally:
            await self._consumer.stop()

    def _deliver(self, record: Record) -> None:
        try:
            self._on_record(record)
        except Exception as exc:  # one record must not end the reader (nor flood the log)
            self._rejections.rejected(
                type(exc).__name__, str(exc), record.where, error=exc, level=logging.ERROR
            )

    async def _reached_end(self, partitions: list[TopicPartition]) -> bool:
        for tp in partitions:
            if tp not in self._targets:
                high = self._consumer.highwater(tp)
                if high is None:
                    return False  # no fetch answered for it yet
                self._targets[tp] = high
            if await self._consumer.position(tp) < self._targets[tp]:
                return False
        return True

    async def _read_up_to(self, partitions: list[TopicPartition]) -> datetime | None:
        """When the whole topic was last seen; None while a fetch answer is undelivered."""
        stamps: list[int] = []
        for tp in partitions:
            stamp = self._consumer.last_poll_timestamp(tp)
            high = self._consumer.highwater(tp)
            if stamp is None or high is None or await self._consumer.position(tp) < high:
                return None
            stamps.append(stamp)
        return datetime.fromtimestamp(min(stamps) / 1000, UTC)  # `partitions` is never empty
