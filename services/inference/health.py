"""A pool instance's recent health, pure: rolling rates, error rate, latency percentiles.

The inference consumer records every finished request here; its heartbeat reads a snapshot
each second. Rates cover the last `window_s` seconds (or the time since start, when shorter,
so a fresh instance does not under-report); the totals are cumulative since start, so a
reader can take exact deltas between two heartbeats.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from llmops.config import PoolConfig
from schemas import PoolPhase, PoolStatus
from schemas.base import MAX_COUNT, MAX_DURATION_MS, MAX_RATE_PER_S

# Bound on remembered completions: percentiles over the newest ones under extreme rates.
MAX_SAMPLES = 20_000
# Rates are divided by at least this many seconds: two requests in the first millisecond
# are not thousands per second.
MIN_SPAN_S = 1.0


@dataclass(frozen=True, slots=True)
class Completion:
    at: float  # monotonic seconds
    latency_ms: float
    output_tokens: int
    error: bool


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    requests_per_s: float
    tokens_per_s: float
    error_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    requests_total: int
    errors_total: int


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of ascending values; 0 for none."""
    if not sorted_values:
        return 0.0
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    rank = max(math.ceil(q / 100.0 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


class HealthWindow:
    def __init__(self, window_s: float, started_at: float, max_samples: int = MAX_SAMPLES) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._started_at = started_at
        self._recent: deque[Completion] = deque(maxlen=max_samples)
        self.requests_total = 0
        self.errors_total = 0

    def record(self, at: float, latency_ms: float, output_tokens: int, error: bool) -> None:
        self._recent.append(Completion(at, max(latency_ms, 0.0), max(output_tokens, 0), error))
        self.requests_total += 1
        self.errors_total += int(error)

    def _evict(self, now: float) -> None:
        horizon = now - self.window_s
        while self._recent and self._recent[0].at < horizon:
            self._recent.popleft()

    def snapshot(self, now: float) -> HealthSnapshot:
        self._evict(now)
        recent = list(self._recent)
        span = max(min(self.window_s, now - self._started_at), MIN_SPAN_S)
        latencies = sorted(c.latency_ms for c in recent)
        errors = sum(1 for c in recent if c.error)
        return HealthSnapshot(
            requests_per_s=len(recent) / span,
            tokens_per_s=sum(c.output_tokens for c in recent) / span,
            error_rate=errors / len(recent) if recent else 0.0,
            latency_p50_ms=percentile(latencies, 50),
            latency_p99_ms=percentile(latencies, 99),
            requests_total=self.requests_total,
            errors_total=self.errors_total,
        )


def pool_status(
    pool: PoolConfig,
    health: HealthSnapshot,
    *,
    instance: str,
    phase: PoolPhase,
    healthy: bool,
    in_flight: int,
    queue_depth: int,
    ts: datetime,
) -> PoolStatus:
    """The heartbeat of one instance: what it is (from its config) and how it is doing.
    Measured numbers are held to the contract's bounds: a beat must always be sendable."""
    return PoolStatus(
        ts=ts,
        pool=pool.name,
        instance=instance,
        phase=phase,
        provider=pool.provider,
        region=pool.region,
        gpu=pool.gpu,
        models=[pool.model],
        adapters=list(pool.adapters),
        capacity=pool.capacity,
        in_flight=_clamp(in_flight, MAX_COUNT),
        queue_depth=_clamp(queue_depth, MAX_COUNT),
        tokens_per_s=_clamp(health.tokens_per_s, MAX_RATE_PER_S),
        requests_per_s=_clamp(health.requests_per_s, MAX_RATE_PER_S),
        requests_total=_clamp(health.requests_total, MAX_COUNT),
        errors_total=_clamp(health.errors_total, MAX_COUNT),
        error_rate=_clamp(health.error_rate, 1.0),
        latency_p50_ms=_clamp(health.latency_p50_ms, MAX_DURATION_MS),
        latency_p99_ms=_clamp(health.latency_p99_ms, MAX_DURATION_MS),
        cost_per_1k_tokens=pool.cost_per_1k_tokens,
        cost_per_gpu_hour=pool.cost_per_gpu_hour,
        healthy=healthy and phase == "serving",
    )


_N = TypeVar("_N", int, float)


def _clamp(value: _N, high: _N) -> _N:
    """`value` within 0..high (NaN, which compares false with everything, as 0)."""
    if not value >= 0:
        return high - high
    return min(value, high)
