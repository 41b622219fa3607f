"""Pool heartbeats: what each inference instance reports so the router can place requests."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import (
    MAX_INT32,
    CostUsd,
    Count,
    Event,
    Fraction,
    Identifier,
    Millis,
    Name,
    RatePerS,
)

PoolPhase = Literal["starting", "serving", "stopping"]


class PoolStatus(Event):
    """One pool instance's heartbeat on llm.pools.status (keyed by pool, about every second).

    A pool may run several instances (replicas of its consumer group); each beats on its own,
    and readers add them up. Rates and percentiles cover the instance's recent window; the
    totals are cumulative since the instance started, so a reader can take exact deltas.
    """

    pool: Name
    instance: Identifier | None = None
    phase: PoolPhase = "serving"
    provider: Name = "local"
    region: Name = "local"
    gpu: Name = "cpu"
    models: list[Name] = Field(default_factory=list)
    adapters: list[Name] = Field(default_factory=list)
    capacity: int = Field(ge=0, le=MAX_INT32)
    in_flight: Count
    queue_depth: Count = 0
    tokens_per_s: RatePerS = 0.0
    requests_per_s: RatePerS = 0.0
    requests_total: Count = 0
    errors_total: Count = 0
    error_rate: Fraction = 0.0
    latency_p50_ms: Millis = 0.0
    latency_p99_ms: Millis = 0.0
    cost_per_1k_tokens: CostUsd = 0.0
    cost_per_gpu_hour: CostUsd = 0.0
    healthy: bool = True
