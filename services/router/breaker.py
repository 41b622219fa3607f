"""A pool's circuit breaker, moved by what its heartbeats say. Pure: the clock is passed in.

closed -> open when its heartbeats go stale (dead) or, over the error window, at least
`min_requests` finished and `error_rate_threshold` of them failed; open -> half-open once
`cooldown_s` passed and the pool beats again; half-open lets `probe_requests` through and
closes when they finished with few enough errors (from the heartbeats' cumulative counters),
else opens again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from llmops.routing_config import RoutingConfig
from schemas import PoolStatus

BreakerState = Literal["closed", "open", "half_open"]
Totals = dict[str, tuple[int, int]]  # instance -> (requests_total, errors_total)


def age_s(ts: datetime, now: datetime) -> float:
    # A beat stamped ahead of our clock (skew) counts as brand new, never as negative age.
    return max((now - ts).total_seconds(), 0.0)


def totals(statuses: Iterable[PoolStatus]) -> Totals:
    """Each instance's cumulative counters, from its newest beat."""
    return {s.instance or "": (s.requests_total, s.errors_total) for s in statuses}


def totals_delta(
    old: Mapping[str, tuple[int, int]], new: Mapping[str, tuple[int, int]]
) -> tuple[int, int]:
    """Requests and errors finished between two per-instance counter snapshots.

    Instances absent from `old` count from zero (they started meanwhile); counters that went
    down (an instance id reused after a restart) count from zero too.
    """
    requests = errors = 0
    for instance, (r_new, e_new) in new.items():
        r_old, e_old = old.get(instance, (0, 0))
        if r_new < r_old or e_new < e_old:
            r_old = e_old = 0
        requests += r_new - r_old
        errors += e_new - e_old
    return requests, errors


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one pool's heartbeats say at one instant, as the breaker's rules read them."""

    stale: bool  # it was heard from, but no instance beat recently enough
    silence: str  # why it is stale ("no heartbeat for 4.0s"); empty when it is not
    serving_healthy: bool  # an instance that beat recently serves and is healthy
    statuses: Collection[PoolStatus]  # the newest beat of each instance
    samples: Iterable[tuple[datetime, Totals]]  # the counters over the error window


@dataclass
class Breaker:
    state: BreakerState = "closed"
    cause: str = ""
    stale_trip: bool = False
    opened_at: datetime | None = None
    closed_at: datetime | None = None  # errors before this do not count
    probes_sent: int = 0
    last_probe_at: datetime | None = None
    baseline: Totals = field(default_factory=dict)

    def note_probe(self, now: datetime) -> None:
        self.probes_sent += 1
        self.last_probe_at = now

    def probes_left(self, config: RoutingConfig) -> int:
        """Probes a half-open breaker still lets through (0 in any other state)."""
        if self.state != "half_open":
            return 0
        return max(config.probe_requests - self.probes_sent, 0)

    def cooldown_left(self, now: datetime, config: RoutingConfig) -> float:
        assert self.opened_at is not None
        return max(config.cooldown_s - age_s(self.opened_at, now), 0.0)

    def deadline(self, config: RoutingConfig) -> float | None:
        """When the clock alone may move it: its cooldown, or its wait for probes, ending."""
        if self.state == "open" and self.opened_at is not None:
            return self.opened_at.timestamp() + config.cooldown_s
        if self.state == "half_open" and self.last_probe_at is not None:
            return self.last_probe_at.timestamp() + config.cooldown_s
        return None


def advance(breaker: Breaker, evidence: Evidence, now: datetime, config: RoutingConfig) -> Breaker:
    """The breaker after what the heartbeats and the clock say (itself when it did not move)."""
    if breaker.state == "closed":
        if evidence.stale:
            return _opened(evidence.silence, now, stale=True)
        cause = _error_trip(breaker, evidence.samples, config)
        return breaker if cause is None else _opened(cause, now, stale=False)
    if breaker.state == "open":
        if evidence.stale:
            return breaker
        assert breaker.opened_at is not None
        cooled = age_s(breaker.opened_at, now) >= config.cooldown_s
        if cooled and evidence.serving_healthy:
            return Breaker(
                state="half_open",
                cause=breaker.cause,
                stale_trip=breaker.stale_trip,
                opened_at=breaker.opened_at,
                baseline=totals(evidence.statuses),
            )
        return breaker
    return _judge_probes(breaker, evidence, now, config)


def _opened(cause: str, now: datetime, stale: bool) -> Breaker:
    return Breaker(state="open", cause=cause, stale_trip=stale, opened_at=now)


def _error_trip(
    breaker: Breaker, samples: Iterable[tuple[datetime, Totals]], config: RoutingConfig
) -> str | None:
    window = [
        (ts, counters)
        for ts, counters in samples
        if breaker.closed_at is None or ts >= breaker.closed_at
    ]
    if len(window) < 2:
        return None
    requests, errors = totals_delta(window[0][1], window[-1][1])
    if requests < config.min_requests:
        return None
    if errors / requests < config.error_rate_threshold:
        return None
    return f"{errors} of {requests} requests failed"


def _judge_probes(
    breaker: Breaker, evidence: Evidence, now: datetime, config: RoutingConfig
) -> Breaker:
    if evidence.stale:
        return _opened(evidence.silence, now, stale=True)
    if breaker.probes_sent == 0:
        return breaker
    requests, errors = totals_delta(breaker.baseline, totals(evidence.statuses))
    if requests >= breaker.probes_sent:
        if errors / requests >= config.error_rate_threshold:
            return _opened(f"probes failed: {errors} of {requests}", now, stale=False)
        return Breaker(state="closed", closed_at=now)
    if breaker.last_probe_at is not None and age_s(breaker.last_probe_at, now) > config.cooldown_s:
        return _opened("probes unanswered", now, stale=False)
    return breaker
