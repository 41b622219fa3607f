"""The async producer every process sends with: each send returns a future that resolves
once the broker acknowledged the record (consumers commit only after that)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import RecordMetadata

from llmops.kafka.config import BusConfig
from llmops.kafka.record import event_headers
from llmops.telemetry.propagation import Headers
from schemas import Event

log = logging.getLogger(__name__)

# A stopping producer waits this long for acknowledgements before dropping what is left.
STOP_FLUSH_S = 5.0


def _as_key(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


class Producer:
    """An async producer; `send*` return a future that resolves once the broker acknowledged."""

    def __init__(self, config: BusConfig) -> None:
        self._config = config
        self._producer = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=config.client_id,
            acks=config.acks,
            linger_ms=config.linger_ms,
            compression_type=config.compression_type,
            max_request_size=config.max_request_size,
            max_batch_size=config.max_batch_size,
            enable_idempotence=config.enable_idempotence,
            **config.security.client_kwargs(),
        )
        self._tracked_topics: set[str] = set()

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Deliver what is pending, for at most STOP_FLUSH_S: with the broker gone, aiokafka
        would hold each batch for its whole request timeout (40 s) and the process with it."""
        try:
            async with asyncio.timeout(STOP_FLUSH_S):
                await self._producer.flush()
        except TimeoutError:
            log.warning(
                "%s: broker unreachable; %gs passed, unacknowledged records dropped at stop",
                self._config.client_id,
                STOP_FLUSH_S,
            )
            # Stop the sender first: failing batches it still retries would confuse it.
            await self._producer._sender.close()
            self._producer._message_accumulator.fail_all(KafkaConnectionError("producer stopped"))
        await self._producer.stop()

    async def _track_topic(self, topic: str) -> None:
        # aiokafka only adds a topic to its metadata watch list when the topic is missing
        # from the metadata it has; topics known from the first (all-topics) fetch are
        # dropped at the next refresh, and batches for them wait for a leader until they
        # expire with NotLeaderForPartitionError. Watching every topic we send to avoids it.
        await self._producer.client.add_topic(topic)
        self._tracked_topics.add(topic)

    async def send(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        sign: bool = False,
    ) -> asyncio.Future[RecordMetadata]:
        """`sign`: add the signature header (kafka/signing.py) when this producer has a key."""
        if topic not in self._tracked_topics:
            await self._track_topic(topic)
        raw_key, headers = _as_key(key), headers or []
        if sign and self._config.signer is not None:  # a new list: the caller's stays as given
            headers = [*headers, self._config.signer.header(topic, headers, raw_key, value)]
        future: asyncio.Future[RecordMetadata] = await self._producer.send(
            topic, value=value, key=raw_key, headers=headers, partition=partition
        )
        return future

    async def send_event(
        self,
        topic: str,
        event: Event,
        key: str | bytes | None = None,
        extra_headers: Iterable[tuple[str, bytes]] = (),
        exclude: set[str] | None = None,
        sign: bool = False,
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """JSON value, content-type and event-type headers, and the current trace context;
        `sign` for control-plane events and results (see `send`)."""
        value = (
            event.to_bytes()
            if exclude is None
            else event.model_dump_json(exclude_none=True, exclude=exclude).encode()
        )
        headers = event_headers(event, extra_headers)
        return await self.send(topic, value, key, headers, partition=partition, sign=sign)

    async def flush(self) -> None:
        await self._producer.flush()

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
