"""The pool board and the routing rules over it: every rule, ties, and all pools down."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmops.config import PoolConfig, TransformersPool
from llmops.prompts.registry import PromptSet
from llmops.routing_config import RoutingConfig, TrafficShift
from schemas import PoolStatus, PromptRequest
from services.router.board import PoolBoard
from services.router.breaker import totals_delta
from services.router.choice import (
    Decision,
    NoHealthyPool,
    RoutingError,
    choose,
    shift_percent,
)
from services.router.policy import route

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHEAP = TransformersPool(name="cheap", model="m", cost_per_1k_tokens=0.1, capacity=4)
MID = TransformersPool(name="mid", model="m", cost_per_1k_tokens=0.5, capacity=8)
PRICEY = TransformersPool(name="pricey", model="m", cost_per_1k_tokens=2.0, capacity=8)
POOLS: list[PoolConfig] = [PRICEY, MID, CHEAP]  # configuration order must not matter
CONFIG = RoutingConfig(
    dead_after_s=3.0,
    headroom_factor=2.0,
    error_rate_threshold=0.5,
    error_window_s=10.0,
    min_requests=5,
    cooldown_s=10.0,
    probe_requests=2,
    startup_grace_s=30.0,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def beat(pool: PoolConfig, t: float, instance: str = "i1", **fields: Any) -> PoolStatus:
    values: dict[str, Any] = {
        "pool": pool.name,
        "instance": instance,
        "ts": at(t),
        "models": [pool.model],
        "adapters": pool.adapters,
        "capacity": pool.capacity,
        "in_flight": 0,
        "cost_per_1k_tokens": pool.cost_per_1k_tokens,
    }
    values.update(fields)
    return PoolStatus(**values)


def board(
    pools: list[PoolConfig] = POOLS, config: RoutingConfig = CONFIG, live: bool = True
) -> PoolBoard:
    b = PoolBoard(pools, config, T0)
    if live:
        b.mark_live(T0)
    return b


def all_up(b: PoolBoard, t: float = 0.0, pools: list[PoolConfig] = POOLS) -> PoolBoard:
    for pool in pools:
        b.observe(beat(pool, t), at(t))
    return b


def pick(b: PoolBoard, t: float, key: str = "k", **kw: Any) -> Decision:
    return b.route(kw.pop("model", "m"), kw.pop("adapter", None), key, at(t), **kw)


# --- cold start ---------------------------------------------------------------------------


def test_before_the_history_is_read_it_routes_by_configuration() -> None:
    b = board(live=False)
    all_up(b)  # history being replayed: states are not trusted yet
    assert {v.state for v in b.views(at(0))} == {"unknown"}
    decision = pick(b, 0)
    assert decision.pool == "cheap" and decision.reason.startswith("cold_start")
    assert b.dead(at(100)) == []  # nothing is rescued before the history is read


def test_no_heartbeat_yet_falls_back_to_the_cheapest_configured_pool() -> None:
    b = board()
    decision = pick(b, 1)
    assert decision.pool == "cheap" and decision.model == "m"
    assert decision.reason.startswith("cold_start: no heartbeat yet")


def test_a_pool_never_heard_from_is_dead_after_the_startup_grace() -> None:
    b = board()
    b.observe(beat(MID, 31), at(31))
    assert b.view("cheap", at(20)).state == "unknown"
    assert b.view("cheap", at(31)).state == "dead"
    assert "never heard from" in b.view("cheap", at(31)).why
    decision = pick(b, 31)
    assert decision.pool == "mid" and decision.reason.startswith("failover")
    assert "cheap" in b.dead(at(31))


def test_known_pools_win_over_silent_ones_during_the_grace() -> None:
    b = board()
    b.observe(beat(PRICEY, 1), at(1))
    decision = pick(b, 1)
    assert decision.pool == "pricey" and decision.reason.startswith("failover")
    assert "cheap unknown" in decision.reason


def test_cold_start_pool_when_every_known_pool_is_down() -> None:
    b = board()
    b.observe(beat(PRICEY, 1, healthy=False), at(1))
    decision = pick(b, 1)
    assert decision.pool == "cheap" and decision.reason.startswith("cold_start")


# --- cheapest healthy, ties, filters ------------------------------------------------------


def test_cheapest_healthy_pool_wins() -> None:
    b = all_up(board())
    decision = pick(b, 0.5)
    assert decision.pool == "cheap"
    assert decision.reason.startswith("cheapest_healthy: cheap at $0.1/1k tokens of 3")


def test_ties_go_to_higher_priority_then_to_the_name() -> None:
    a = TransformersPool(name="a", model="m", cost_per_1k_tokens=1.0)
    b_ = TransformersPool(name="b", model="m", cost_per_1k_tokens=1.0)
    c = TransformersPool(name="c", model="m", cost_per_1k_tokens=1.0, priority=5)
    tb = all_up(board([b_, a]), pools=[b_, a])
    assert pick(tb, 0).pool == "a"
    tb = all_up(board([a, b_, c]), pools=[a, b_, c])
    assert pick(tb, 0).pool == "c"


def test_heartbeat_price_overrides_the_configured_one() -> None:
    b = board()
    b.observe(beat(CHEAP, 0, cost_per_1k_tokens=9.0), at(0))  # spot price went up
    b.observe(beat(MID, 0), at(0))
    b.observe(beat(PRICEY, 0), at(0))
    assert pick(b, 0.5).pool == "mid"


def test_model_and_adapter_filter_the_candidates() -> None:
    big = TransformersPool(name="big", model="big", cost_per_1k_tokens=0.01, adapters=["sql"])
    pools: list[PoolConfig] = [*POOLS, big]
    b = all_up(board(pools), pools=pools)
    assert pick(b, 0, model=None).pool == "big"  # any model: cheapest overall
    assert pick(b, 0, model="m").pool == "cheap"
    assert pick(b, 0, model=None, adapter="sql").pool == "big"
    with pytest.raises(RoutingError, match="no configured pool serves model 'x'"):
        pick(b, 0, model="x")
    with pytest.raises(RoutingError, match="adapter 'nope'"):
        pick(b, 0, adapter="nope")


def test_unconfigured_pools_are_ignored_or_only_shown() -> None:
    stranger = TransformersPool(name="stranger", model="m", cost_per_1k_tokens=0.0)
    b = all_up(board())
    b.observe(beat(stranger, 0), at(0))
    assert "stranger" not in b.names()
    shown = PoolBoard(POOLS, CONFIG, T0, follow_unconfigured=True)
    shown.mark_live(T0)
    all_up(shown)
    shown.observe(beat(stranger, 0), at(0))
    view = shown.view("stranger", at(0))
    assert view.state == "up" and not view.configured
    assert pick(shown, 0).pool == "cheap"  # seen, never routed to


# --- headroom and spillover ---------------------------------------------------------------


def test_saturated_cheapest_spills_to_the_next() -> None:
    b = board()
    b.observe(beat(CHEAP, 0, in_flight=4, queue_depth=4), at(0))  # 8 = capacity 4 * 2
    all_up(b, pools=[MID, PRICEY])
    assert b.view("cheap", at(0)).state == "saturated"
    decision = pick(b, 0.5)
    assert decision.pool == "mid"
    assert decision.reason.startswith("spillover: mid")
    assert "cheap saturated (load 8 of 8)" in decision.reason


def test_requests_routed_since_the_last_beat_count_as_load() -> None:
    b = all_up(board())
    chosen = [pick(b, 0.1).pool for _ in range(10)]
    assert chosen == ["cheap"] * 8 + ["mid"] * 2
    b.observe(beat(CHEAP, 1, in_flight=2), at(1))  # the next beat replaces the estimate
    assert pick(b, 1.1).pool == "cheap"


def test_all_saturated_goes_to_the_least_loaded() -> None:
    b = board()
    b.observe(beat(CHEAP, 0, in_flight=4, queue_depth=12), at(0))  # 16 / 4
    b.observe(beat(MID, 0, in_flight=8, queue_depth=16), at(0))  # 24 / 8
    b.observe(beat(PRICEY, 0, in_flight=8, queue_depth=40), at(0))  # 48 / 8
    decision = pick(b, 0.5)
    assert decision.pool == "mid" and decision.reason.startswith("all_saturated")


def test_all_saturated_tie_goes_to_the_cheaper() -> None:
    b = board()
    for pool in POOLS:
        b.observe(beat(pool, 0, in_flight=pool.capacity, queue_depth=pool.capacity), at(0))
    assert pick(b, 0.5).pool == "cheap"


def test_capacity_counts_healthy_serving_instances_only() -> None:
    b = board()
    b.observe(beat(CHEAP, 0, instance="a"), at(0))
    b.observe(beat(CHEAP, 0, instance="b", healthy=False, in_flight=3), at(0))
    view = b.view("cheap", at(0))
    assert view.capacity == 4 and view.instances == 2 and view.in_flight == 3


# --- dead pools and failover --------------------------------------------------------------


def test_stale_heartbeats_make_a_pool_dead_and_traffic_fails_over() -> None:
    b = all_up(board())
    for pool in (MID, PRICEY):
        b.observe(beat(pool, 3), at(3))
    assert b.view("cheap", at(3.0)).state == "up"  # exactly dead_after old: still alive
    view = b.view("cheap", at(3.1))
    assert view.state == "dead" and view.why == "no heartbeat for 3.1s"
    decision = pick(b, 3.1)
    assert decision.pool == "mid"
    assert decision.reason.startswith("failover: mid at $0.5/1k tokens")
    assert "cheap dead (no heartbeat for 3.1s)" in decision.reason
    assert b.dead(at(3.1)) == ["cheap"]


def test_one_live_instance_keeps_the_pool_alive() -> None:
    b = board()
    b.observe(beat(CHEAP, 0, instance="a"), at(0))
    b.observe(beat(CHEAP, 2, instance="b"), at(2))
    view = b.view("cheap", at(4))
    assert view.state == "up" and view.instances == 1
    assert b.dead(at(4)) == []


def test_older_beats_are_ignored() -> None:
    b = board()
    b.observe(beat(CHEAP, 5, in_flight=1), at(5))
    b.observe(beat(CHEAP, 1, in_flight=3), at(5))  # replayed or reordered
    assert b.view("cheap", at(5)).in_flight == 1


def test_unhealthy_starting_and_stopping_pools_are_skipped() -> None:
    for fields, state in (
        ({"healthy": False}, "unhealthy"),
        ({"phase": "starting", "healthy": False}, "starting"),
        ({"phase": "stopping", "healthy": False}, "stopping"),
    ):
        b = board()
        b.observe(beat(CHEAP, 0, **fields), at(0))
        all_up(b, pools=[MID, PRICEY])
        assert b.view("cheap", at(0)).state == state
        decision = pick(b, 0)
        assert decision.pool == "mid" and decision.reason.startswith("failover")
        assert f"cheap {state}" in decision.reason


def test_a_starting_pool_takes_work_when_nothing_else_can() -> None:
    b = board([CHEAP])
    b.observe(beat(CHEAP, 0, phase="starting", healthy=False), at(0))
    decision = pick(b, 0)
    assert decision.pool == "cheap" and decision.reason.startswith("last_resort")


def test_all_pools_down_is_no_healthy_pool_naming_each() -> None:
    b = all_up(board())
    b.observe(beat(MID, 5, healthy=False), at(5))
    with pytest.raises(NoHealthyPool) as info:
        pick(b, 5)
    message = str(info.value)
    assert message.startswith("no healthy pool serves model 'm'")
    assert "cheap dead (no heartbeat for 5.0s)" in message
    assert "mid unhealthy" in message and "pricey dead" in message
    assert isinstance(info.value, RoutingError)


def test_excluded_pools_are_never_chosen() -> None:
    b = all_up(board())
    decision = pick(b, 0, exclude={"cheap"})
    assert decision.pool == "mid" and decision.reason.startswith("cheapest_healthy")
    with pytest.raises(NoHealthyPool):
        pick(b, 0, exclude={"cheap", "mid", "pricey"})


# --- the breaker --------------------------------------------------------------------------


def test_error_rate_jump_opens_the_breaker() -> None:
    b = all_up(board())
    b.observe(beat(CHEAP, 1, requests_total=10, errors_total=6), at(1))
    view = b.view("cheap", at(1))
    assert view.state == "open" and view.why.startswith("6 of 10 requests failed")
    decision = pick(b, 1)
    assert decision.pool == "mid" and "cheap open (6 of 10 requests failed" in decision.reason


def test_few_requests_or_few_errors_do_not_open_it() -> None:
    b = all_up(board())
    b.observe(beat(CHEAP, 1, requests_total=4, errors_total=4), at(1))  # < min_requests
    assert b.view("cheap", at(1)).state == "up"
    b.observe(beat(CHEAP, 2, requests_total=20, errors_total=9), at(2))  # 9/20 < 50%
    assert b.view("cheap", at(2)).state == "up"


def test_errors_older_than_the_window_do_not_count() -> None:
    b = all_up(board())
    b.observe(beat(CHEAP, 1, requests_total=10, errors_total=1), at(1))
    b.observe(beat(CHEAP, 20, requests_total=10, errors_total=1), at(20))
    b.observe(beat(CHEAP, 21, requests_total=14, errors_total=2), at(21))
    assert b.view("cheap", at(21)).state == "up"


def _tripped() -> PoolBoard:
    b = all_up(board())
    b.observe(beat(CHEAP, 1, requests_total=10, errors_total=6), at(1))
    for pool in (MID, PRICEY):
        b.observe(beat(pool, 11), at(11))
    return b


def test_after_the_cooldown_probes_go_through_then_it_waits() -> None:
    b = _tripped()
    b.observe(beat(CHEAP, 10.5, requests_total=10, errors_total=6), at(10.5))
    assert b.view("cheap", at(10.9)).state == "open"  # opened at 1 s, cooldown 10 s
    assert b.view("cheap", at(11)).state == "half_open"
    first, second, third = pick(b, 11), pick(b, 11), pick(b, 11)
    assert (first.pool, first.probe) == ("cheap", True)
    assert first.reason.startswith("probe: cheap half_open")
    assert (second.pool, second.probe) == ("cheap", True)
    assert third.pool == "mid" and "cheap half_open" in third.reason and not third.probe


def test_answered_probes_close_the_breaker() -> None:
    b = _tripped()
    b.observe(beat(CHEAP, 10.5, requests_total=10, errors_total=6), at(10.5))
    b.view("cheap", at(11))
    pick(b, 11), pick(b, 11)
    b.observe(beat(CHEAP, 12, requests_total=12, errors_total=6), at(12))
    assert b.view("cheap", at(12)).state == "up"
    assert pick(b, 12).reason.startswith("cheapest_healthy")
    # Errors from before it closed do not open it again.
    b.observe(beat(CHEAP, 13, requests_total=13, errors_total=6), at(13))
    assert b.view("cheap", at(13)).state == "up"


def test_failed_probes_open_it_again() -> None:
    b = _tripped()
    b.observe(beat(CHEAP, 10.5, requests_total=10, errors_total=6), at(10.5))
    b.view("cheap", at(11))
    pick(b, 11), pick(b, 11)
    b.observe(beat(CHEAP, 12, requests_total=12, errors_total=8), at(12))
    view = b.view("cheap", at(12))
    assert view.state == "open" and view.why.startswith("probes failed: 2 of 2")


def test_unanswered_probes_open_it_again() -> None:
    b = _tripped()
    b.observe(beat(CHEAP, 10.5, requests_total=10, errors_total=6), at(10.5))
    b.view("cheap", at(11))
    pick(b, 11)
    for t in (12, 18):
        b.observe(beat(CHEAP, t, requests_total=10, errors_total=6), at(t))
    assert b.view("cheap", at(21)).state == "half_open"
    b.observe(beat(CHEAP, 21.5, requests_total=10, errors_total=6), at(21.5))
    view = b.view("cheap", at(21.5))
    assert view.state == "open" and view.why.startswith("probes unanswered")


def test_a_dead_pool_that_beats_again_recovers_through_half_open() -> None:
    b = board([CHEAP])
    b.observe(beat(CHEAP, 0), at(0))
    assert b.view("cheap", at(4)).state == "dead"  # breaker opened at 4 s
    b.observe(beat(CHEAP, 6), at(6))
    view = b.view("cheap", at(6))
    assert view.state == "recovering" and "after no heartbeat for 4.0s" in view.why
    assert b.dead(at(6)) == []
    # Alone, it is the last resort rather than an error.
    assert pick(b, 6).reason.startswith("last_resort")
    b.observe(beat(CHEAP, 14), at(14))
    assert b.view("cheap", at(14)).state == "half_open"


def test_breaker_stays_open_while_the_pool_is_silent() -> None:
    b = all_up(board())
    b.observe(beat(CHEAP, 1, requests_total=10, errors_total=6), at(1))
    assert b.view("cheap", at(1)).state == "open"
    assert b.view("cheap", at(20)).state == "dead"
    assert sorted(b.dead(at(20))) == ["cheap", "mid", "pricey"]


def test_totals_delta_handles_new_instances_and_restarts() -> None:
    assert totals_delta({"a": (10, 1)}, {"a": (15, 3)}) == (5, 2)
    assert totals_delta({"a": (10, 1)}, {"a": (10, 1), "b": (4, 4)}) == (4, 4)
    assert totals_delta({"a": (10, 1)}, {"a": (2, 0)}) == (2, 0)  # counter reset
    assert totals_delta({"a": (10, 1)}, {}) == (0, 0)


# --- traffic shifting ---------------------------------------------------------------------

CANARY = TransformersPool(name="canary", model="m", cost_per_1k_tokens=0.05, capacity=1000)


def _shift_board(shift: TrafficShift) -> PoolBoard:
    pools: list[PoolConfig] = [*POOLS, CANARY]
    config = CONFIG.model_copy(update={"shifts": [shift]})
    big: list[PoolConfig] = [p.model_copy(update={"capacity": 1000}) for p in pools]
    return all_up(board(big, config), pools=big)


def test_a_shift_moves_a_sticky_share_of_its_source_traffic() -> None:
    b = _shift_board(TrafficShift(name="c1", source="cheap", target="canary", percent=10))
    picks = {f"user-{i}": pick(b, 0, key=f"user-{i}") for i in range(2000)}
    counts = Counter(d.pool for d in picks.values())
    assert set(counts) == {"cheap", "canary"}
    assert 150 <= counts["canary"] <= 250  # 10% of 2000, give or take
    canary = next(d for d in picks.values() if d.pool == "canary")
    assert canary.reason.startswith("canary: 10% of cheap traffic to canary")
    assert "(shift c1)" in canary.reason
    again = {k: pick(b, 0, key=k).pool for k in list(picks)[:200]}
    assert again == {k: picks[k].pool for k in again}  # sticky


def test_the_target_takes_no_traffic_outside_the_shift() -> None:
    # The canary is the cheapest pool, yet only the shifted share reaches it.
    b = _shift_board(TrafficShift(name="c1", source="cheap", target="canary", percent=0))
    assert {pick(b, 0, key=f"u{i}").pool for i in range(200)} == {"cheap"}


def test_a_ramp_grows_the_share_and_keeps_keys_on_the_canary() -> None:
    shift = TrafficShift(
        name="ramp",
        source="cheap",
        target="canary",
        percent=1,
        ramp_to_percent=100,
        ramp_start=T0,
        ramp_s=100,
    )
    assert shift_percent(shift, at(-5)) == 1
    assert shift_percent(shift, at(50)) == pytest.approx(50.5)
    assert shift_percent(shift, at(500)) == 100
    b = _shift_board(shift)
    keys = [f"u{i}" for i in range(500)]

    def on_canary(t: float) -> set[str]:
        for pool in [*POOLS, CANARY]:  # keep every pool beating
            b.observe(beat(pool, t, capacity=10**6), at(t))
        return {k for k in keys if pick(b, t, key=k).pool == "canary"}

    early, late = on_canary(10), on_canary(60)
    assert 0 < len(early) < len(late) < len(keys)
    assert early < late  # the share grows, and nobody moves back
    assert on_canary(100) == set(keys)


def test_a_down_target_leaves_traffic_on_the_source_and_says_so() -> None:
    b = _shift_board(TrafficShift(name="c1", source="cheap", target="canary", percent=100))
    b.observe(beat(CANARY, 0.5, healthy=False), at(0.5))
    decision = pick(b, 0.5)
    assert decision.pool == "cheap" and "canary canary unhealthy" in decision.reason


def test_no_shift_applies_when_its_source_is_down() -> None:
    b = _shift_board(TrafficShift(name="c1", source="cheap", target="canary", percent=100))
    for pool in (MID, PRICEY, CANARY):
        b.observe(beat(pool.model_copy(update={"capacity": 1000}), 5), at(5))
    decision = pick(b, 5)
    assert decision.pool == "mid" and decision.reason.startswith("failover")


def test_a_shift_needs_a_complete_ramp_and_two_pools() -> None:
    with pytest.raises(ValueError, match="ramp"):
        TrafficShift(name="x", source="a", target="b", ramp_to_percent=50)
    with pytest.raises(ValueError, match="same pool"):
        TrafficShift(name="x", source="a", target="a")


# --- the pure choice and the routed request -----------------------------------------------


def test_choose_is_a_function_of_the_views() -> None:
    b = all_up(board())
    views = b.views(at(0))
    assert choose(views, "m", None, "k", at(0)) == choose(views, "m", None, "k", at(0))
    assert choose(views, "m", None, "k", at(0)).pool == "cheap"


def test_route_with_a_board_records_pool_model_and_reason() -> None:
    b = all_up(board())
    request = PromptRequest(messages=[{"role": "user", "content": "hi"}], model="m")
    routed = route(request, PromptSet(), POOLS, at(0), b)
    assert routed.pool == "cheap" and routed.model == "m"
    assert routed.route_reason.startswith("cheapest_healthy")
    assert routed.rerouted_from is None
    assert b.view("cheap", at(0)).load == 1  # recorded on the board
