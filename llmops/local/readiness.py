"""When is the platform ready? When every pool says it is serving, on llm.pools.status.

`PoolBoard` is the pure part (the latest word of each pool since a start time); `StatusFeed`
reads the heartbeats. Only beats from after the start count: an earlier run's "serving" on a
broker that keeps its data, or on a shared Kafka, says nothing about this run's pools.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from llmops.kafka.security import PLAINTEXT, KafkaSecurity
from schemas import PoolStatus
from schemas.topics import POOL_STATUS

log = logging.getLogger(__name__)


@dataclass
class PoolBoard:
    """Each configured pool's latest state: no beat yet, starting, serving, unhealthy."""

    pools: list[str]
    since: datetime
    states: dict[str, str] = field(default_factory=dict)

    def see(self, status: PoolStatus) -> None:
        if status.pool not in self.pools or status.ts < self.since:
            return
        serving = status.phase == "serving"
        self.states[status.pool] = (
            "unhealthy" if serving and not status.healthy else str(status.phase)
        )

    def state(self, pool: str) -> str:
        return self.states.get(pool, "no heartbeat yet")

    def ready(self) -> bool:
        return all(self.state(p) == "serving" for p in self.pools)

    def describe(self) -> str:
        return ", ".join(f"{p} {self.state(p)}" for p in self.pools)


class StatusFeed:
    """The pools' heartbeats from the start of llm.pools.status (kafka-python, synchronous:
    the supervisor that reads them is)."""

    def __init__(self, bootstrap_servers: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id="llmops-readiness",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=200,
            **security.client_kwargs(),
        )
        partitions = self._consumer.partitions_for_topic(POOL_STATUS.name) or {0}
        self._consumer.assign([TopicPartition(POOL_STATUS.name, p) for p in partitions])

    def poll(self, timeout_s: float) -> list[PoolStatus]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000))
        statuses = []
        for records in batches.values():
            for record in records:
                try:
                    statuses.append(PoolStatus.model_validate_json(record.value or b""))
                except (ValidationError, ValueError):
                    continue  # not ours to judge here; the router dead-letters it
        return statuses

    def close(self) -> None:
        self._consumer.close()
