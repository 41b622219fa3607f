"""Which pool a request goes to, from the pools' states at one instant. Pure: `now` is passed in.

`choose` picks a pool for one request from the board's views (services/router/board.py):

1. cold start: no heartbeat from any candidate yet -> the cheapest configured pool;
2. the cheapest pool that is up with headroom (ties: higher priority, then name). A cheaper
   pool skipped on the way makes it a `failover` (down, failing, cooling down) or a
   `spillover` (saturated); a half-open pool with probes left gets the request as a `probe`;
3. a traffic shift moves a sticky share of its source pool's traffic to its target (`canary`);
4. every healthy pool saturated -> the least loaded one (`all_saturated`): work queues in
   Kafka instead of being refused;
5. only pools that are not serving yet but alive (starting, stopping, recovering after
   missing heartbeats, half-open without probes left) -> the cheapest of them
   (`last_resort`): a restart must not turn into errors;
6. nothing alive -> NoHealthyPool, which the app hears as a `no_healthy_pool` error.

"Cheapest first" is one rule, `cost_rank`, for live views and for configured pools alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from llmops.experiments.assignment import bucket
from llmops.routing_config import TrafficShift

PoolState = Literal[
    "up",
    "saturated",
    "half_open",
    "open",
    "recovering",
    "starting",
    "stopping",
    "unhealthy",
    "dead",
    "unknown",
]
# States a pool can be in while alive but not serving: used only when nothing else is.
LAST_RESORT: frozenset[PoolState] = frozenset({"recovering", "starting", "stopping", "half_open"})


class RoutingError(LookupError):
    """No configured pool serves the request's model and adapter: the request is unroutable."""


class NoHealthyPool(RoutingError):
    """Pools serve the request, but none of them is alive and healthy now."""


class Priced(Protocol):
    """A pool as the ranking sees it: a live view or a configured pool."""

    @property
    def name(self) -> str: ...
    @property
    def cost_per_1k_tokens(self) -> float: ...
    @property
    def priority(self) -> int: ...


def cost_rank(pool: Priced) -> tuple[float, int, str]:
    """Cheapest first; ties: higher priority, then name (deterministic)."""
    return (pool.cost_per_1k_tokens, -pool.priority, pool.name)


@dataclass(slots=True)
class PoolView:
    """One pool at one instant: its state, why, and the numbers behind it.

    Mutable for the board's routing cache alone, which moves its own views' load as it routes
    (cheaper than a copy per decision); `PoolBoard.view(s)` always hands out fresh ones.
    """

    name: str
    state: PoolState
    why: str
    configured: bool
    cost_per_1k_tokens: float
    cost_per_gpu_hour: float
    priority: int
    models: tuple[str, ...]
    adapters: tuple[str, ...]
    provider: str = "local"
    region: str = "local"
    gpu: str = "cpu"
    capacity: int = 0
    in_flight: int = 0
    queue_depth: int = 0
    load: int = 0  # estimated: in flight + queued at the beat + routed since - finished since
    tokens_per_s: float = 0.0
    requests_per_s: float = 0.0
    error_rate: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    instances: int = 0
    age_s: float | None = None  # of the newest beat; None: never heard from
    probes_left: int = 0

    def serves(self, model: str | None, adapter: str | None) -> bool:
        return (model is None or model in self.models) and (
            adapter is None or adapter in self.adapters
        )

    def describe(self) -> str:
        return f"{self.name} {self.state} ({self.why})"


@dataclass(frozen=True, slots=True)
class Decision:
    pool: str
    model: str | None
    reason: str
    probe: bool = False


def shift_percent(shift: TrafficShift, now: datetime) -> float:
    """The share (0-100) of the source's traffic the shift moves at `now`."""
    if shift.ramp_to_percent is None or shift.ramp_start is None:
        return shift.percent
    progress = (now - shift.ramp_start).total_seconds() / shift.ramp_s
    progress = min(max(progress, 0.0), 1.0)
    return shift.percent + (shift.ramp_to_percent - shift.percent) * progress


def _price(view: PoolView) -> str:
    return f"{view.name} at ${view.cost_per_1k_tokens:g}/1k tokens"


def _outcome(skipped: Sequence[PoolView]) -> str:
    if any(v.state != "saturated" for v in skipped):
        return "failover"
    return "spillover" if skipped else "cheapest_healthy"


def _skips(skipped: Sequence[PoolView]) -> str:
    return "; ".join(v.describe() for v in skipped)


def _model_for(view: PoolView, model: str | None) -> str | None:
    return model if model is not None else (view.models[0] if view.models else None)


def _decide(view: PoolView, model: str | None, reason: str, probe: bool = False) -> Decision:
    return Decision(view.name, _model_for(view, model), reason, probe)


def _canary(
    base: PoolView,
    by_name: Mapping[str, PoolView],
    model: str | None,
    adapter: str | None,
    key: str,
    now: datetime,
    shifts: Sequence[TrafficShift],
) -> tuple[Decision | None, str]:
    """The shift's target, when this request's key falls in the share moved off `base`."""
    for shift in shifts:
        if shift.source != base.name:
            continue
        percent = shift_percent(shift, now)
        if bucket(shift.name, key) * 100.0 >= percent:
            continue
        target = by_name.get(shift.target)
        if target is None or not target.serves(model, adapter):
            return None, f"; canary {shift.target} cannot serve it"
        if target.state == "up" or (target.state == "half_open" and target.probes_left):
            reason = (
                f"canary: {percent:g}% of {base.name} traffic to {_price(target)} "
                f"(shift {shift.name})"
            )
            return _decide(target, model, reason, probe=target.state == "half_open"), ""
        return None, f"; canary {target.describe()}"
    return None, ""


def choose(
    views: Sequence[PoolView],
    model: str | None,
    adapter: str | None,
    key: str,
    now: datetime,
    shifts: Sequence[TrafficShift] = (),
    exclude: frozenset[str] = frozenset(),
) -> Decision:
    """The pool for one request (see the module's docstring for the rules, in order).

    Raises RoutingError when no configured pool serves the model/adapter at all, and
    NoHealthyPool when pools serve it but none is alive.
    """
    serving = [v for v in views if v.configured and v.serves(model, adapter)]
    wanted = f"model {model!r}" if model else "any model"
    if adapter:
        wanted += f" with adapter {adapter!r}"
    if not serving:
        names = [v.name for v in views if v.configured]
        raise RoutingError(f"no configured pool serves {wanted}; pools: {names}")
    by_name = {v.name: v for v in serving}
    targets = {s.target for s in shifts}
    allowed = [v for v in serving if v.name not in exclude]
    # A shift's target takes only the shifted share, unless nothing else serves the request.
    ranked = sorted([v for v in allowed if v.name not in targets] or allowed, key=cost_rank)
    if ranked and all(v.state == "unknown" for v in ranked):
        return _decide(
            ranked[0],
            model,
            f"cold_start: no heartbeat yet from {len(ranked)} candidates; "
            f"cheapest configured {_price(ranked[0])}",
        )
    skipped: list[PoolView] = []
    for view in ranked:
        if view.state == "up":
            canary, note = _canary(view, by_name, model, adapter, key, now, shifts)
            if canary is not None:
                return canary
            outcome = _outcome(skipped)
            detail = f"; {_skips(skipped)}" if skipped else f" of {len(ranked)} candidates"
            return _decide(view, model, f"{outcome}: {_price(view)}{detail}{note}")
        if view.state == "half_open" and view.probes_left > 0:
            detail = f"; {_skips(skipped)}" if skipped else ""
            return _decide(view, model, f"probe: {view.describe()}{detail}", probe=True)
        skipped.append(view)
    saturated = [v for v in ranked if v.state == "saturated"]
    if saturated:
        least = min(saturated, key=lambda v: (v.load / max(v.capacity, 1), cost_rank(v)))
        return _decide(
            least,
            model,
            f"all_saturated: {_price(least)} is the least loaded ({least.why}) "
            f"of {len(saturated)} saturated pools",
        )
    unknown = [v for v in ranked if v.state == "unknown"]
    if unknown:
        return _decide(
            unknown[0],
            model,
            f"cold_start: no heartbeat yet from {unknown[0].name}; {_skips(skipped)}",
        )
    alive = [v for v in ranked if v.state in LAST_RESORT]
    if alive:
        return _decide(alive[0], model, f"last_resort: {alive[0].describe()}; {_skips(skipped)}")
    down = "; ".join(v.describe() for v in sorted(serving, key=cost_rank))
    raise NoHealthyPool(f"no healthy pool serves {wanted}: {down}")
