"""A pool loading its engine is starting, not dead, even when its beats come irregularly.

Seen at every `llmops up` with the real model: the pool beat "starting", then loading the
weights held its event loop for 4.3 s, the router declared it dead (3 s) and started a rescuer
that joined the pool's own consumer group just as the pool came up.
"""

from __future__ import annotations

from tests.unit.router.test_pools import CHEAP, CONFIG, MID, at, beat, board, pick


def test_a_starting_pool_silent_for_longer_than_dead_after_is_still_starting() -> None:
    b = board([CHEAP])
    b.observe(beat(CHEAP, 1.0, phase="starting", healthy=False), at(1.0))
    view = b.view("cheap", at(5.3))  # 4.3 s after its beat: a serving pool would be dead
    assert view.state == "starting"
    assert b.dead(at(5.3)) == []
    assert pick(b, 5.3).pool == "cheap"  # last resort: it is coming, requests wait in its topic


def test_a_starting_pool_silent_past_the_startup_bound_is_dead() -> None:
    b = board([CHEAP])
    b.observe(beat(CHEAP, 1.0, phase="starting", healthy=False), at(1.0))
    late = 1.0 + CONFIG.starting_dead_after_s + 0.5
    assert b.view("cheap", at(late)).state == "dead"
    assert b.dead(at(late)) == ["cheap"]


def test_a_serving_pool_still_dies_after_dead_after() -> None:
    b = board([CHEAP])
    b.observe(beat(CHEAP, 1.0, phase="serving"), at(1.0))
    assert b.view("cheap", at(4.5)).state == "dead"
    assert b.dead(at(4.5)) == ["cheap"]


def test_starting_then_serving_goes_up_without_a_breaker_trip() -> None:
    b = board([CHEAP, MID])
    b.observe(beat(MID, 0.0), at(0.0))
    b.observe(beat(CHEAP, 1.0, phase="starting", healthy=False), at(1.0))
    b.observe(beat(MID, 4.0), at(4.0))
    assert b.view("cheap", at(5.3)).state == "starting"
    b.observe(beat(CHEAP, 5.4, phase="serving"), at(5.4))
    b.observe(beat(MID, 5.4), at(5.4))
    # No cooldown to sit out: it never counted as dead.
    assert b.view("cheap", at(5.5)).state == "up"
    assert pick(b, 5.5).pool == "cheap"


def test_the_cached_routing_view_expires_at_the_startup_bound() -> None:
    b = board([CHEAP, MID])
    b.observe(beat(CHEAP, 1.0, phase="starting", healthy=False), at(1.0))
    b.observe(beat(MID, 1.0), at(1.0))
    for t in (2.0, 10.0, 30.0):  # refreshes of MID's beats keep MID up
        b.observe(beat(MID, t), at(t))
    assert pick(b, 30.5).pool == "mid"
    after = 1.0 + CONFIG.starting_dead_after_s + 0.1
    b.observe(beat(MID, after), at(after))
    assert b.dead(at(after)) == ["cheap"]
