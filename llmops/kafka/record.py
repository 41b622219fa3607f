"""A consumed record as every consumer sees it, and the headers our events are sent with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from llmops.kafka.deadletter import (
    Rejected,
    build_dead_letter,
    classify_decode_error,
    sniff_reply_fields,
)
from llmops.kafka.signing import SigningKeys
from llmops.telemetry.propagation import Headers, inject_context
from schemas import DeadLetter, Event
from schemas.topics import CONTENT_TYPE_HEADER, EVENT_TYPE_HEADER, JSON_CONTENT_TYPE

E = TypeVar("E", bound=Event)

# Oversized input up to this many times the limit is still parsed to find its reply address.
SNIFF_LIMIT_FACTOR = 16

# Headers as consumer clients hand them over: aiokafka a sequence of pairs, faust either that
# or a mapping (no repeated names then).
ConsumedHeaders = Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None


def consumed_headers(headers: ConsumedHeaders) -> Headers:
    """Headers as Kafka has them (repeats included), whatever shape the client holds them in."""
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int

    @classmethod
    def consumed(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: ConsumedHeaders,
        timestamp_ms: int,
    ) -> Record:
        """A record as any consumer client delivered it (aiokafka's, faust's)."""
        return cls(topic, partition, offset, key, value, consumed_headers(headers), timestamp_ms)

    @classmethod
    def from_consumer_record(cls, raw: ConsumerRecord[bytes, bytes]) -> Record:
        """An aiokafka record (its timestamp is in milliseconds already)."""
        return cls.consumed(
            raw.topic, raw.partition, raw.offset, raw.key, raw.value, raw.headers, raw.timestamp
        )

    @property
    def where(self) -> str:
        """topic[partition]@offset, as logs name a record."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def dead_letter(self, rejected: Rejected, service: str) -> DeadLetter:
        """This record, whole, as a dead letter from `service` with the reason."""
        return build_dead_letter(self, rejected, service)

    def verify(self, keys: SigningKeys | None, expect: type[Event]) -> None:
        """Raise SignatureError (a Rejected) unless the record is signed under `keys` as an
        `expect` event; None means signing is off: nothing to check."""
        if keys is not None:
            keys.verify(self.topic, self.headers, self.key, self.value, expect.__name__)

    def decode(self, contract: type[E], max_bytes: int) -> E:
        """The record's value as `contract`, or Rejected with the reason and any reply address."""
        payload = self.value or b""
        if len(payload) > max_bytes:
            # Parse it once anyway (bounded) to tell the app: it is waiting for an answer.
            small_enough = len(payload) <= SNIFF_LIMIT_FACTOR * max_bytes
            request_id, reply_to = sniff_reply_fields(payload) if small_enough else (None, None)
            raise Rejected(
                "oversized",
                f"payload of {len(payload)} bytes exceeds the limit of {max_bytes}",
                request_id,
                reply_to,
            )
        try:
            return contract.model_validate_json(payload)
        except (ValidationError, ValueError, RecursionError) as exc:
            rejected = classify_decode_error(payload, exc)
            rejected.request_id, rejected.reply_to = sniff_reply_fields(payload)
            raise rejected from exc


def event_headers(event: Event, extra: Iterable[tuple[str, bytes]] = ()) -> Headers:
    """Content and event-type headers of `event` (plus `extra`) and the current trace context."""
    headers: Headers = [
        (CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),
        (EVENT_TYPE_HEADER, type(event).__name__.encode()),
        *extra,
    ]
    return inject_context(headers)
