"""Pool states from heartbeats, and which pool a request goes to. Pure: the clock is passed in.

`PoolBoard` is fed PoolStatus heartbeats and answers, at any instant, what state each
configured pool is in. `choose` picks a pool for one request from those states:

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

The breaker per pool: closed -> open when its heartbeats go stale (dead) or, over the error
window, at least `min_requests` finished and `error_rate_threshold` of them failed; open ->
half-open once `cooldown_s` passed and the pool beats again; half-open lets `probe_requests`
through and closes when they finished with few enough errors (from the heartbeats' cumulative
counters), else opens again. A pool is `dead` while no instance beat within `dead_after_s`;
a dead pool's queued requests are for the router's rescuer.

The board's clock is the status feed's: once the reader reports how far it has read
(`note_feed`), every rule is judged as of then, never later. A router whose own reader lags
(a busy event loop, a slow broker) must not call pools dead for beats it has not read yet.

Routing is on the hot path of every request, so `PoolBoard.route` does not rebuild the views
per decision: each pool's view is cached until something can change it (a heartbeat, a
decision that saturates it or sends it a probe, the next instant a clock rule fires: a beat
going stale, a cooldown ending, the startup grace or a probe timing out) and at most
`VIEW_TTL_S`, so the ages quoted in reasons stay current. While the views hold, a decision
that no traffic shift or probe makes key-dependent is reused for the same model, adapter and
exclusions. The decisions are exactly `choose`'s over fresh views (a property test checks it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from llmops.config import PoolConfig
from llmops.experiments.assignment import bucket
from llmops.routing_config import RoutingConfig, TrafficShift
from schemas import PoolStatus

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
BreakerState = Literal["closed", "open", "half_open"]
Totals = dict[str, tuple[int, int]]  # instance -> (requests_total, errors_total)
# States a pool can be in while alive but not serving: used only when nothing else is.
LAST_RESORT: frozenset[PoolState] = frozenset({"recovering", "starting", "stopping", "half_open"})
# Instances silent for this many dead_after periods are forgotten (memory stays bounded).
FORGET_AFTER_DEAD_PERIODS = 20
# Longest a cached view is used for routing: bounds how old the ages and loads in reasons get.
VIEW_TTL_S = 0.1
MemoKey = tuple[str | None, str | None, frozenset[str]]


class RoutingError(LookupError):
    """No configured pool serves the request's model and adapter: the request is unroutable."""


class NoHealthyPool(RoutingError):
    """Pools serve the request, but none of them is alive and healthy now."""


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

    @property
    def rank(self) -> tuple[float, int, str]:
        """Cheapest first; ties: higher priority, then name (deterministic)."""
        return (self.cost_per_1k_tokens, -self.priority, self.name)

    def describe(self) -> str:
        return f"{self.name} {self.state} ({self.why})"


@dataclass(frozen=True, slots=True)
class Decision:
    pool: str
    model: str | None
    reason: str
    probe: bool = False


@dataclass
class _Breaker:
    state: BreakerState = "closed"
    cause: str = ""
    stale_trip: bool = False
    opened_at: datetime | None = None
    closed_at: datetime | None = None  # errors before this do not count
    probes_sent: int = 0
    last_probe_at: datetime | None = None
    baseline: Totals = field(default_factory=dict)


@dataclass(slots=True)
class _Cached:
    """A pool's view for routing, valid for instants in [since, until)."""

    view: PoolView
    since: float
    until: float
    limit: float  # load at which the pool saturates
    backlog: int  # the load less the requests routed since the beat, as of `since`


@dataclass
class _Pool:
    name: str
    config: PoolConfig | None
    instances: dict[str, PoolStatus] = field(default_factory=dict)
    samples: deque[tuple[datetime, Totals]] = field(default_factory=deque)
    breaker: _Breaker = field(default_factory=_Breaker)
    newest_beat: datetime | None = None
    routed_since_beat: int = 0


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


def shift_percent(shift: TrafficShift, now: datetime) -> float:
    """The share (0-100) of the source's traffic the shift moves at `now`."""
    if shift.ramp_to_percent is None or shift.ramp_start is None:
        return shift.percent
    progress = (now - shift.ramp_start).total_seconds() / shift.ramp_s
    progress = min(max(progress, 0.0), 1.0)
    return shift.percent + (shift.ramp_to_percent - shift.percent) * progress


class PoolBoard:
    """What the heartbeats say about each pool, with each pool's breaker."""

    def __init__(
        self,
        pools: Sequence[PoolConfig],
        config: RoutingConfig,
        started_at: datetime,
        *,
        follow_unconfigured: bool = False,
    ) -> None:
        self.config = config
        self.started_at = started_at
        self.live_since: datetime | None = None
        self.feed_read_at: datetime | None = None  # how far the status feed is read
        self._follow_unconfigured = follow_unconfigured
        self._pools: dict[str, _Pool] = {p.name: _Pool(p.name, p) for p in pools}
        # The routing cache (see the module docstring): per-pool views, the instants for
        # which all of them hold, and decisions reused while they do.
        self._cache: dict[str, _Cached] = {}
        self._views: list[PoolView] | None = None
        self._views_since = 0.0
        self._views_until = 0.0
        self._memo: dict[MemoKey, Decision] = {}
        self._key_bound = frozenset(s.source for s in config.shifts) | frozenset(
            s.target for s in config.shifts
        )

    # --- input ----------------------------------------------------------------------------

    def mark_live(self, now: datetime) -> None:
        """The status history is read up to its end: states from here on are current."""
        if self.live_since is None:
            self.live_since = now
            self._cache.clear()
            self._forget_views()

    @property
    def live(self) -> bool:
        return self.live_since is not None

    def note_feed(self, read_at: datetime) -> None:
        """The status feed has been read up to `read_at` (a poll of every partition ended)."""
        if self.feed_read_at is None or read_at > self.feed_read_at:
            self.feed_read_at = read_at

    def _clock(self, now: datetime) -> datetime:
        read_at = self.feed_read_at
        return now if read_at is None or now <= read_at else read_at

    def observe(self, status: PoolStatus, now: datetime) -> None:
        now = self._clock(now)
        pool = self._pools.get(status.pool)
        if pool is None:
            if not self._follow_unconfigured:
                return  # the router serves its configured pools only
            pool = self._pools[status.pool] = _Pool(status.pool, None)
            self._forget_views()
        instance = status.instance or ""
        known = pool.instances.get(instance)
        if known is not None and known.ts >= status.ts:
            return  # older than what we have (replay, reordering)
        pool.instances[instance] = status
        if pool.newest_beat is None or status.ts > pool.newest_beat:
            pool.newest_beat = status.ts
        pool.routed_since_beat = 0
        self._forget_silent(pool, now)
        pool.samples.append((status.ts, _totals(pool.instances.values())))
        horizon = now.timestamp() - self.config.error_window_s
        while len(pool.samples) > 1 and pool.samples[0][0].timestamp() < horizon:
            pool.samples.popleft()
        self._advance(pool, now)
        self._invalidate(pool.name)

    def note_routed(self, decision: Decision, now: datetime) -> None:
        now = self._clock(now)
        pool = self._pools.get(decision.pool)
        if pool is None:
            return
        pool.routed_since_beat += 1
        if decision.probe:
            pool.breaker.probes_sent += 1
            pool.breaker.last_probe_at = now
            self._invalidate(pool.name)
            return
        cached = self._cache.get(pool.name)
        if cached is not None and cached.view.state in ("up", "saturated"):
            self._note_load(pool, cached)

    # --- output ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._pools)

    def view(self, name: str, now: datetime) -> PoolView:
        now = self._clock(now)
        pool = self._pools[name]
        self._advance(pool, now)
        self._invalidate(name)  # the breaker may have moved: routing refreshes this pool
        return self._view(pool, now)

    def views(self, now: datetime) -> list[PoolView]:
        return [self.view(name, now) for name in self._pools]

    def dead(self, now: datetime) -> list[str]:
        """Configured pools declared dead: their queued requests may be rescued."""
        if not self.live:
            return []
        return [v.name for v in self.views(now) if v.state == "dead" and v.configured]

    def route(
        self,
        model: str | None,
        adapter: str | None,
        key: str,
        now: datetime,
        exclude: Iterable[str] = (),
    ) -> Decision:
        """`choose` over the current states, recorded (load estimate, probes)."""
        now = self._clock(now)
        excluded = exclude if isinstance(exclude, frozenset) else frozenset(exclude)
        views = self._routing_views(now)
        memo_key = (model, adapter, excluded)
        decision = self._memo.get(memo_key)
        if decision is None:
            decision = choose(views, model, adapter, key, now, self.config.shifts, excluded)
            if not decision.probe and decision.pool not in self._key_bound:
                self._memo[memo_key] = decision
        self.note_routed(decision, now)
        return decision

    # --- the routing cache ----------------------------------------------------------------

    def _routing_views(self, now: datetime) -> list[PoolView]:
        t = now.timestamp()
        if self._views is not None and self._views_since <= t < self._views_until:
            return self._views
        views: list[PoolView] = []
        since, until = t, t + VIEW_TTL_S
        for name, pool in self._pools.items():
            cached = self._cache.get(name)
            if cached is None or not cached.since <= t < cached.until:
                cached = self._refresh(pool, now)
            views.append(cached.view)
            since, until = max(since, cached.since), min(until, cached.until)
        self._views, self._views_since, self._views_until = views, since, until
        return views

    def _refresh(self, pool: _Pool, now: datetime) -> _Cached:
        """Advance the pool's breaker, and cache and return its view as of `now`."""
        self._advance(pool, now)
        view = self._view(pool, now)
        t = now.timestamp()
        cached = _Cached(
            view,
            t,
            self._valid_until(pool, t),
            view.capacity * self.config.headroom_factor,
            _backlog(view.in_flight + view.queue_depth, view.requests_per_s, pool, now),
        )
        self._cache[pool.name] = cached
        self._forget_views()
        return cached

    def _valid_until(self, pool: _Pool, t: float) -> float:
        """The next instant a clock rule may change the pool's state, at most VIEW_TTL_S away.

        A deadline at `t` itself makes the window empty: the view is recomputed at every
        instant until the rule has fired.
        """
        config = self.config
        deadlines = [t + VIEW_TTL_S]
        if pool.newest_beat is None and self.live_since is not None:
            deadlines.append(self.live_since.timestamp() + config.startup_grace_s)
        deadlines += (s.ts.timestamp() + self._dead_after(s) for s in pool.instances.values())
        breaker = pool.breaker
        if breaker.state == "open" and breaker.opened_at is not None:
            deadlines.append(breaker.opened_at.timestamp() + config.cooldown_s)
        if breaker.state == "half_open" and breaker.last_probe_at is not None:
            deadlines.append(breaker.last_probe_at.timestamp() + config.cooldown_s)
        return min(d for d in deadlines if d >= t)

    def _note_load(self, pool: _Pool, cached: _Cached) -> None:
        """One more request routed to an up or saturated pool: its cached view's load moves.

        Only a change of state (up -> saturated) or a saturated pool's load (the least loaded
        of saturated pools is chosen) can change a decision: those update the view in place
        (as `_state` would say it; the view is the cache's own) and drop the reused decisions.
        An up pool's load in the cached view, and the drain since the refresh, catch up at
        its next refresh (until then the estimate errs on the high side).
        """
        view = cached.view
        load = max(cached.backlog + pool.routed_since_beat, 0)
        if load < cached.limit:
            return  # still up (the reason text is only built when it changes)
        view.state, view.why = _load_state(load, cached.limit)
        view.load = load
        self._memo.clear()

    def _invalidate(self, name: str) -> None:
        self._cache.pop(name, None)
        self._forget_views()

    def _forget_views(self) -> None:
        self._views = None
        self._memo.clear()

    # --- internals ------------------------------------------------------------------------

    def _dead_after(self, status: PoolStatus) -> float:
        """How long an instance may be silent after this beat and still count as alive."""
        if status.phase == "starting":  # its engine may hold the heartbeat's thread up
            return max(self.config.dead_after_s, self.config.starting_dead_after_s)
        return self.config.dead_after_s

    def _fresh(self, pool: _Pool, now: datetime) -> list[PoolStatus]:
        return [s for s in pool.instances.values() if _age(s.ts, now) <= self._dead_after(s)]

    def _forget_silent(self, pool: _Pool, now: datetime) -> None:
        config = self.config
        limit = max(config.dead_after_s * FORGET_AFTER_DEAD_PERIODS, config.starting_dead_after_s)
        for instance, status in list(pool.instances.items()):
            if _age(status.ts, now) > limit:
                del pool.instances[instance]

    def _stale(self, pool: _Pool, now: datetime) -> bool:
        return pool.newest_beat is not None and not self._fresh(pool, now)

    def _error_trip(self, pool: _Pool) -> str | None:
        breaker = pool.breaker
        window = [
            (ts, totals)
            for ts, totals in pool.samples
            if breaker.closed_at is None or ts >= breaker.closed_at
        ]
        if len(window) < 2:
            return None
        requests, errors = totals_delta(window[0][1], window[-1][1])
        if requests < self.config.min_requests:
            return None
        if errors / requests < self.config.error_rate_threshold:
            return None
        return f"{errors} of {requests} requests failed"

    def _trip(self, pool: _Pool, now: datetime, cause: str, stale: bool) -> None:
        pool.breaker = _Breaker(state="open", cause=cause, stale_trip=stale, opened_at=now)

    def _advance(self, pool: _Pool, now: datetime) -> None:
        """Move the breaker along with what the heartbeats and the clock say."""
        if not self.live:
            return
        breaker = pool.breaker
        stale = self._stale(pool, now)
        if breaker.state == "closed":
            if stale:
                self._trip(pool, now, self._silence(pool, now), stale=True)
            elif (cause := self._error_trip(pool)) is not None:
                self._trip(pool, now, cause, stale=False)
        elif breaker.state == "open":
            if stale:
                return
            assert breaker.opened_at is not None
            cooled = _age(breaker.opened_at, now) >= self.config.cooldown_s
            if cooled and self._serving_healthy(pool, now):
                pool.breaker = _Breaker(
                    state="half_open",
                    cause=breaker.cause,
                    stale_trip=breaker.stale_trip,
                    opened_at=breaker.opened_at,
                    baseline=_totals(pool.instances.values()),
                )
        else:
            self._judge_probes(pool, now, stale)

    def _judge_probes(self, pool: _Pool, now: datetime, stale: bool) -> None:
        breaker = pool.breaker
        if stale:
            self._trip(pool, now, self._silence(pool, now), stale=True)
            return
        if breaker.probes_sent == 0:
            return
        requests, errors = totals_delta(breaker.baseline, _totals(pool.instances.values()))
        if requests >= breaker.probes_sent:
            if errors / requests >= self.config.error_rate_threshold:
                self._trip(pool, now, f"probes failed: {errors} of {requests}", stale=False)
            else:
                pool.breaker = _Breaker(state="closed", closed_at=now)
        elif breaker.last_probe_at is not None and (
            _age(breaker.last_probe_at, now) > self.config.cooldown_s
        ):
            self._trip(pool, now, "probes unanswered", stale=False)

    def _serving_healthy(self, pool: _Pool, now: datetime) -> bool:
        return any(s.phase == "serving" and s.healthy for s in self._fresh(pool, now))

    def _silence(self, pool: _Pool, now: datetime) -> str:
        assert pool.newest_beat is not None
        return f"no heartbeat for {_age(pool.newest_beat, now):.1f}s"

    def _view(self, pool: _Pool, now: datetime) -> PoolView:
        fresh = self._fresh(pool, now)
        config = pool.config
        # One pass over the fresh instances (few per pool): this runs on every refresh.
        newest: PoolStatus | None = None
        capacity = in_flight = queued = 0
        tokens = finished = weighted_errors = p50 = p99 = 0.0
        for s in fresh:
            if newest is None or s.ts > newest.ts:
                newest = s
            if s.phase == "serving" and s.healthy:
                capacity += s.capacity
            in_flight += s.in_flight
            queued += s.queue_depth
            tokens += s.tokens_per_s
            finished += s.requests_per_s
            weighted_errors += s.error_rate * s.requests_per_s
            p50 = max(p50, s.latency_p50_ms)
            p99 = max(p99, s.latency_p99_ms)
        load = max(_backlog(in_flight + queued, finished, pool, now) + pool.routed_since_beat, 0)
        state, why = self._state(pool, fresh, load, now)
        source: PoolStatus | PoolConfig | None = newest if newest is not None else config
        return PoolView(
            name=pool.name,
            state=state,
            why=why,
            configured=config is not None,
            cost_per_1k_tokens=source.cost_per_1k_tokens if source else 0.0,
            cost_per_gpu_hour=source.cost_per_gpu_hour if source else 0.0,
            priority=config.priority if config else 0,
            models=tuple(newest.models) if newest else ((config.model,) if config else ()),
            adapters=tuple(newest.adapters if newest else (config.adapters if config else ())),
            provider=source.provider if source else "local",
            region=source.region if source else "local",
            gpu=source.gpu if source else "cpu",
            capacity=capacity,
            in_flight=in_flight,
            queue_depth=queued,
            load=load,
            tokens_per_s=tokens,
            requests_per_s=finished,
            error_rate=weighted_errors / finished if finished else 0.0,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            instances=len(fresh),
            age_s=_age(pool.newest_beat, now) if pool.newest_beat else None,
            probes_left=(
                max(self.config.probe_requests - pool.breaker.probes_sent, 0)
                if pool.breaker.state == "half_open"
                else 0
            ),
        )

    def _state(
        self, pool: _Pool, fresh: list[PoolStatus], load: int, now: datetime
    ) -> tuple[PoolState, str]:
        if not self.live:
            return "unknown", "status history still loading"
        if pool.newest_beat is None:
            assert self.live_since is not None
            waited = _age(self.live_since, now)
            if waited > self.config.startup_grace_s:
                return "dead", f"never heard from in {waited:.0f}s"
            return "unknown", "no heartbeat yet"
        if not fresh:
            return "dead", self._silence(pool, now)
        breaker = pool.breaker
        if breaker.state == "open":
            assert breaker.opened_at is not None
            left = max(self.config.cooldown_s - _age(breaker.opened_at, now), 0.0)
            if breaker.stale_trip:
                return "recovering", f"beating again after {breaker.cause}; cooldown {left:.1f}s"
            return "open", f"{breaker.cause}; cooldown {left:.1f}s"
        serving = [s for s in fresh if s.phase == "serving"]
        if not serving:
            if any(s.phase == "starting" for s in fresh):
                return "starting", "loading its engine"
            return "stopping", "draining"
        healthy = [s for s in serving if s.healthy]
        if not healthy:
            return "unhealthy", "its engine reports unhealthy"
        if breaker.state == "half_open":
            left = max(self.config.probe_requests - breaker.probes_sent, 0)
            return "half_open", f"after {breaker.cause}; {left} probes left"
        capacity = sum(s.capacity for s in healthy)
        limit = capacity * self.config.headroom_factor
        return _load_state(load, limit)


def _backlog(at_beat: int, finished_per_s: float, pool: _Pool, now: datetime) -> int:
    """In flight + queued at the newest beat less what the pool finished since at its reported
    rate (negative: room for that many of the requests routed since). Without the drain, a
    router sending more than a pool's capacity per heartbeat interval would call every pool
    saturated and spread the traffic over pricier ones even when the cheap one keeps up.
    """
    since = _age(pool.newest_beat, now) if pool.newest_beat else 0.0
    return at_beat - int(finished_per_s * since)


def _load_state(load: int, limit: float) -> tuple[PoolState, str]:
    """A serving, healthy pool with a closed breaker: saturated at the limit, else up."""
    return ("saturated" if load >= limit else "up"), f"load {load} of {limit:g}"


def _age(ts: datetime, now: datetime) -> float:
    # A beat stamped ahead of our clock (skew) counts as brand new, never as negative age.
    return max((now - ts).total_seconds(), 0.0)


def _totals(statuses: Iterable[PoolStatus]) -> Totals:
    return {s.instance or "": (s.requests_total, s.errors_total) for s in statuses}


# --- the decision -------------------------------------------------------------------------


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
    ranked = sorted([v for v in allowed if v.name not in targets] or allowed, key=lambda v: v.rank)
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
        least = min(saturated, key=lambda v: (v.load / max(v.capacity, 1), v.rank))
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
    down = "; ".join(v.describe() for v in sorted(serving, key=lambda v: v.rank))
    raise NoHealthyPool(f"no healthy pool serves {wanted}: {down}")
