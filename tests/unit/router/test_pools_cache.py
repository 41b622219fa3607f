"""The board's routing cache decides exactly as `choose` over freshly computed views.

Random but seeded event sequences (heartbeats of every kind, decisions with and without
exclusions and shifts, clock steps) are fed to two boards: one routes through its cache
(`PoolBoard.route`), the reference recomputes every view at every decision, as the board did
before it had a cache. Where the cache is allowed to lag (ages quoted in reasons, the drain of
the load estimate, both refreshed at most VIEW_TTL_S late) the comparison says so.
"""

import random
from datetime import UTC, datetime, timedelta

import pytest

from llmops.config import PoolConfig, TransformersPool
from llmops.routing_config import RoutingConfig, TrafficShift
from schemas import PoolStatus
from services.router.board import VIEW_TTL_S, PoolBoard
from services.router.choice import Decision, NoHealthyPool, RoutingError, choose

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POOLS = [
    TransformersPool(name="cheap", model="m", cost_per_1k_tokens=0.1, capacity=4, adapters=["a"]),
    TransformersPool(name="mid", model="m", cost_per_1k_tokens=0.5, capacity=6),
    TransformersPool(name="pricey", model="m", cost_per_1k_tokens=2.0, capacity=8),
    TransformersPool(name="other", model="n", cost_per_1k_tokens=0.3, capacity=4),
]
CONFIG = RoutingConfig(
    dead_after_s=1.0,
    headroom_factor=1.5,
    error_window_s=3.0,
    min_requests=3,
    cooldown_s=1.5,
    probe_requests=2,
    startup_grace_s=2.0,
)
SHIFTED = CONFIG.model_copy(
    update={
        "shifts": [
            TrafficShift(
                name="canary",
                source="cheap",
                target="mid",
                percent=10.0,
                ramp_to_percent=60.0,
                ramp_start=T0,
                ramp_s=20.0,
            )
        ]
    }
)
Outcome = Decision | str  # a decision, or the error's class and message


class Instance:
    """A pool instance's cumulative counters, so its heartbeats stay consistent."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0


def random_beat(
    rng: random.Random, pool: PoolConfig, instance: str, counters: Instance, now: datetime
) -> PoolStatus:
    finished = rng.randint(0, 6)
    counters.requests += finished
    counters.errors += rng.choice([0, 0, finished])
    return PoolStatus(
        ts=now - timedelta(seconds=rng.choice([0.0, 0.0, 0.2])),
        pool=pool.name,
        instance=instance,
        phase=rng.choice(["serving"] * 8 + ["starting", "stopping"]),
        models=[pool.model],
        adapters=pool.adapters,
        capacity=pool.capacity,
        cost_per_1k_tokens=pool.cost_per_1k_tokens,
        in_flight=rng.randint(0, pool.capacity * 2),
        queue_depth=rng.choice([0, 0, 3]),
        requests_per_s=0.0,
        requests_total=counters.requests,
        errors_total=counters.errors,
        healthy=rng.random() > 0.1,
    )


def reference_route(
    board: PoolBoard,
    model: str,
    adapter: str | None,
    key: str,
    now: datetime,
    exclude: frozenset[str],
) -> Decision:
    decision = choose(board.views(now), model, adapter, key, now, board.config.shifts, exclude)
    board.note_routed(decision, now)
    return decision


def outcome(call: object, *args: object) -> Outcome:
    try:
        return call(*args)  # type: ignore[operator, no-any-return]
    except (NoHealthyPool, RoutingError) as exc:
        return f"{type(exc).__name__}: {exc}"


def rule(result: Outcome) -> object:
    """What a decision is, without the ages and loads its reason may quote."""
    if isinstance(result, str):
        return result.split(":")[0]
    return (result.pool, result.model, result.probe, result.reason.split(":")[0])


def run_pair(
    seed: int, config: RoutingConfig, *, max_step_s: float
) -> list[tuple[Outcome, Outcome]]:
    rng = random.Random(seed)
    cached, reference = PoolBoard(POOLS, config, T0), PoolBoard(POOLS, config, T0)
    counters = {(p.name, i): Instance() for p in POOLS for i in ("i1", "i2")}
    t = 0.0
    pairs: list[tuple[Outcome, Outcome]] = []
    for step in range(400):
        now = T0 + timedelta(seconds=t)
        if step == 5:
            cached.mark_live(now)
            reference.mark_live(now)
        roll = rng.random()
        if roll < 0.25:
            pool = rng.choice(POOLS[:3] if rng.random() < 0.9 else POOLS)
            if rng.random() < 0.8 or pool.name != "cheap":  # cheap goes silent at times
                instance = rng.choice(["i1", "i1", "i2"])
                status = random_beat(rng, pool, instance, counters[(pool.name, instance)], now)
                cached.observe(status, now)
                reference.observe(status, now)
        elif roll < 0.35:
            t += rng.uniform(0.0, max_step_s * 5)
        else:
            model = rng.choice(["m", "m", "m", "n", "x"])
            adapter = "a" if rng.random() < 0.1 else None
            exclude = frozenset(["cheap"]) if rng.random() < 0.1 else frozenset()
            key = f"user-{rng.randint(0, 50)}"
            pairs.append(
                (
                    outcome(cached.route, model, adapter, key, now, exclude),
                    outcome(reference_route, reference, model, adapter, key, now, exclude),
                )
            )
            t += rng.choice([0.0, 0.0, rng.uniform(0.0, max_step_s)])
    return pairs


@pytest.mark.parametrize("config", [CONFIG, SHIFTED], ids=["plain", "canary"])
@pytest.mark.parametrize("seed", range(12))
def test_cached_routing_takes_the_reference_decisions(seed: int, config: RoutingConfig) -> None:
    pairs = run_pair(seed, config, max_step_s=0.05)
    assert len(pairs) > 200
    for cached, reference in pairs:
        assert rule(cached) == rule(reference)
    # The run went through more than one rule, so the comparison covered something.
    assert len({rule(reference) for _, reference in pairs}) >= 3


@pytest.mark.parametrize("seed", range(6))
def test_decisions_at_one_instant_match_the_reference_to_the_letter(seed: int) -> None:
    """Steps of zero or of more than VIEW_TTL_S: the cache is always fresh or within its
    instant, so even the reasons (ages, loads) must be the same text."""
    rng = random.Random(seed)
    cached, reference = PoolBoard(POOLS, CONFIG, T0), PoolBoard(POOLS, CONFIG, T0)
    cached.mark_live(T0)
    reference.mark_live(T0)
    counters = {(p.name, "i1"): Instance() for p in POOLS}
    t = 0.0
    compared = 0
    for _ in range(60):
        now = T0 + timedelta(seconds=t)
        for pool in POOLS:
            if rng.random() < 0.7:
                status = random_beat(rng, pool, "i1", counters[(pool.name, "i1")], now)
                status = status.model_copy(update={"requests_per_s": rng.choice([0.0, 20.0])})
                cached.observe(status, now)
                reference.observe(status, now)
        later = now + timedelta(seconds=rng.uniform(0.0, VIEW_TTL_S))
        for _ in range(rng.randint(1, 30)):  # a burst at one instant: saturates, spills
            got = outcome(cached.route, "m", None, "k", later, frozenset())
            want = outcome(reference_route, reference, "m", None, "k", later, frozenset())
            assert got == want
            compared += 1
        t += 2 * VIEW_TTL_S + rng.uniform(0.0, 1.0)  # every cached view has expired
    assert compared > 300


def test_a_saturating_pool_spills_within_the_instant() -> None:
    """The cached view of an up pool turns saturated on the decision that fills it."""
    cheap = POOLS[0]
    board = cheap_and_mid_beating()
    limit = int(cheap.capacity * CONFIG.headroom_factor)
    pools = [board.route("m", None, "k", T0).pool for _ in range(limit + 2)]
    assert pools[:limit] == ["cheap"] * limit
    assert pools[limit:] == ["mid", "mid"]
    spilled = board.route("m", None, "k", T0)
    assert spilled.reason.startswith(
        f"spillover: mid at $0.5/1k tokens; cheap saturated (load {limit}"
    )


def test_the_load_estimate_drains_at_the_reported_rate() -> None:
    """Routed requests count as load until the pool's finishing rate says they are done."""
    cheap = POOLS[0]
    board = cheap_and_mid_beating(in_flight=2, requests_per_s=10.0)
    limit = int(cheap.capacity * CONFIG.headroom_factor)  # 6: room for 4 more at T0
    assert [board.route("m", None, "k", T0).pool for _ in range(5)] == ["cheap"] * 4 + ["mid"]
    half_s = T0 + timedelta(seconds=0.5)  # 5 finished meanwhile: cheap has room again
    assert board.view("cheap", half_s).load == 2 + 4 - 5
    assert board.route("m", None, "k", half_s).pool == "cheap"
    assert board.view("cheap", half_s).state == "up" and limit == 6


def cheap_and_mid_beating(in_flight: int = 0, requests_per_s: float = 0.0) -> PoolBoard:
    """A live board of the cheap and mid pools, both beating at T0."""
    board = PoolBoard(POOLS[:2], CONFIG, T0)
    board.mark_live(T0)
    for pool in POOLS[:2]:
        board.observe(fixed_beat(pool, in_flight, requests_per_s), T0)
    return board


def fixed_beat(
    pool: PoolConfig, in_flight: int, requests_per_s: float = 0.0, at_s: float = 0.0
) -> PoolStatus:
    return PoolStatus(
        ts=T0 + timedelta(seconds=at_s),
        pool=pool.name,
        instance="i1",
        models=[pool.model],
        capacity=pool.capacity,
        cost_per_1k_tokens=pool.cost_per_1k_tokens,
        in_flight=in_flight,
        requests_per_s=requests_per_s,
    )


def test_a_beat_going_stale_is_seen_at_the_first_decision_after_it() -> None:
    cheap, mid = POOLS[0], POOLS[1]
    board = PoolBoard([cheap, mid], CONFIG, T0)
    board.mark_live(T0)
    board.observe(fixed_beat(cheap, in_flight=0), T0)
    board.observe(fixed_beat(mid, in_flight=0, at_s=0.5), T0 + timedelta(seconds=0.5))
    just = T0 + timedelta(seconds=CONFIG.dead_after_s)
    assert board.route("m", None, "k", just - timedelta(milliseconds=1)).pool == "cheap"
    assert board.route("m", None, "k", just).pool == "cheap"  # still fresh at the limit
    after = board.route("m", None, "k", just + timedelta(microseconds=1))
    assert after.pool == "mid" and after.reason.startswith("failover")
    assert "cheap dead (no heartbeat for 1.0s)" in after.reason


def test_the_board_judges_beats_as_of_how_far_the_feed_is_read() -> None:
    """A router whose status reader lags keeps its pools: their beats may be unread yet."""
    board = cheap_and_mid_beating()
    board.note_feed(T0 + timedelta(seconds=0.5))
    late = T0 + timedelta(seconds=10)  # long past dead_after_s by the wall clock
    decision = board.route("m", None, "k", late)
    assert decision.pool == "cheap" and decision.reason.startswith("cheapest_healthy")
    assert board.dead(late) == []
    board.note_feed(T0 + timedelta(seconds=0.2))  # never moves back
    assert board.feed_read_at == T0 + timedelta(seconds=0.5)
    board.note_feed(late)  # the reader caught up: nothing came, so they are silent
    assert sorted(board.dead(late)) == ["cheap", "mid"]
    with pytest.raises(NoHealthyPool, match=r"cheap dead \(no heartbeat for 10.0s\)"):
        board.route("m", None, "k", late)
