"""What every Kafka client of a process shares: where the brokers are, who it is, how it
connects and signs, and the producer's delivery settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmops.kafka.security import KafkaSecurity, process_security
from llmops.kafka.signing import SigningKeys, process_keys


@dataclass(frozen=True)
class BusConfig:
    bootstrap_servers: str
    client_id: str = "llmops"
    linger_ms: int = 1
    acks: int | str = "all"
    compression_type: str | None = None
    max_request_size: int = 2 * 1_048_576
    # aiokafka sends one request per partition at a time: bigger batches carry more of a
    # busy partition (a reply topic has one) per round trip.
    max_batch_size: int = 256 * 1024
    enable_idempotence: bool = False  # aiokafka's InitProducerId fails on Tansu
    # SASL/TLS of every client built from this config; default: this process's settings.
    security: KafkaSecurity = field(default_factory=process_security)
    # What `send(..., sign=True)` signs with; default: this process's signing key, if any.
    signer: SigningKeys | None = field(default_factory=process_keys)
