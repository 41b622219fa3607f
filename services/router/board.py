"""Pool states from heartbeats: what each configured pool is doing, at any instant. Pure.

`PoolBoard` is fed PoolStatus heartbeats and answers what state each pool is in, with its
circuit breaker (services/router/breaker.py); `PoolBoard.route` asks `choose`
(services/router/choice.py) for a pool over those states and records the decision. A pool is
`dead` while no instance beat within `dead_after_s`; a dead pool's queued requests are for
the router's rescuer.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from llmops.config import PoolConfig
from llmops.routing_config import RoutingConfig
from schemas import PoolStatus
from services.router.breaker import Breaker, Evidence, Totals, advance, age_s, totals
from services.router.choice import Decision, PoolState, PoolView, choose

# Instances silent for this many dead_after periods are forgotten (memory stays bounded).
FORGET_AFTER_DEAD_PERIODS = 20
# Longest a cached view is used for routing: bounds how old the ages and loads in reasons get.
VIEW_TTL_S = 0.1
MemoKey = tuple[str | None, str | None, frozenset[str]]


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
    breaker: Breaker = field(default_factory=Breaker)
    newest_beat: datetime | None = None
    routed_since_beat: int = 0


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
        pool.samples.append((status.ts, totals(pool.instances.values())))
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
            pool.breaker.note_probe(now)
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
        breaker_deadline = pool.breaker.deadline(config)
        if breaker_deadline is not None:
            deadlines.append(breaker_deadline)
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
        return [s for s in pool.instances.values() if age_s(s.ts, now) <= self._dead_after(s)]

    def _forget_silent(self, pool: _Pool, now: datetime) -> None:
        config = self.config
        limit = max(config.dead_after_s * FORGET_AFTER_DEAD_PERIODS, config.starting_dead_after_s)
        for instance, status in list(pool.instances.items()):
            if age_s(status.ts, now) > limit:
                del pool.instances[instance]

    def _advance(self, pool: _Pool, now: datetime) -> None:
        """Move the breaker along with what the heartbeats and the clock say."""
        if not self.live:
            return
        fresh = self._fresh(pool, now)
        stale = pool.newest_beat is not None and not fresh
        evidence = Evidence(
            stale=stale,
            silence=self._silence(pool, now) if stale else "",
            serving_healthy=any(s.phase == "serving" and s.healthy for s in fresh),
            statuses=pool.instances.values(),
            samples=pool.samples,
        )
        pool.breaker = advance(pool.breaker, evidence, now, self.config)

    def _silence(self, pool: _Pool, now: datetime) -> str:
        assert pool.newest_beat is not None
        return f"no heartbeat for {age_s(pool.newest_beat, now):.1f}s"

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
            age_s=age_s(pool.newest_beat, now) if pool.newest_beat else None,
            probes_left=pool.breaker.probes_left(self.config),
        )

    def _state(
        self, pool: _Pool, fresh: list[PoolStatus], load: int, now: datetime
    ) -> tuple[PoolState, str]:
        if not self.live:
            return "unknown", "status history still loading"
        if pool.newest_beat is None:
            assert self.live_since is not None
            waited = age_s(self.live_since, now)
            if waited > self.config.startup_grace_s:
                return "dead", f"never heard from in {waited:.0f}s"
            return "unknown", "no heartbeat yet"
        if not fresh:
            return "dead", self._silence(pool, now)
        breaker = pool.breaker
        if breaker.state == "open":
            left = breaker.cooldown_left(now, self.config)
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
            probes = breaker.probes_left(self.config)
            return "half_open", f"after {breaker.cause}; {probes} probes left"
        capacity = sum(s.capacity for s in healthy)
        limit = capacity * self.config.headroom_factor
        return _load_state(load, limit)


def _backlog(at_beat: int, finished_per_s: float, pool: _Pool, now: datetime) -> int:
    """In flight + queued at the newest beat less what the pool finished since at its reported
    rate (negative: room for that many of the requests routed since). Without the drain, a
    router sending more than a pool's capacity per heartbeat interval would call every pool
    saturated and spread the traffic over pricier ones even when the cheap one keeps up.
    """
    since = age_s(pool.newest_beat, now) if pool.newest_beat else 0.0
    return at_beat - int(finished_per_s * since)


def _load_state(load: int, limit: float) -> tuple[PoolState, str]:
    """A serving, healthy pool with a closed breaker: saturated at the limit, else up."""
    return ("saturated" if load >= limit else "up"), f"load {load} of {limit:g}"
