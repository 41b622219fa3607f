"""What every Kafka client of a process shares: where the brokers are, who it is, how it
connects and signs, and the producer's delivery settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops.kafka.security import PLAINTEXT, KafkaSecurity
from llmops.kafka.signing import SigningKeys, keys_from_settings

if TYPE_CHECKING:
    from llmops.config import Settings


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
    # SASL/TLS of every client built from this config.
    security: KafkaSecurity = PLAINTEXT
    # What `send(..., sign=True)` signs with; None: such records go out unsigned.
    signer: SigningKeys | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client_id: str = "llmops", **options: Any
    ) -> BusConfig:
        """A service's bus: the broker, security and signing key of `settings` (`options`:
        the other fields). Raises SigningConfigError where signing is required and no key
        is set, as the service's own start does."""
        return cls(
            settings.kafka_bootstrap_servers,
            client_id=client_id,
            security=KafkaSecurity.from_settings(settings),
            signer=keys_from_settings(settings),
            **options,
        )
