"""The adaptive fetch wait: quick under traffic, slow when quiet, quick again at once."""

from __future__ import annotations

import pytest

from llmops.kafka.fetchwait import AdaptiveWait, FetchWaitTuner, set_fetch_wait


def test_short_while_records_keep_coming() -> None:
    wait = AdaptiveWait(busy_ms=5, idle_ms=500, quiet_after_s=0.5)
    wait.start(0.0)
    for tick in range(1, 100):
        assert wait.observe(1, tick * 0.3) == 5  # a record every 0.3 s: never slows


def test_short_through_the_grace_then_grows_with_the_quiet_time() -> None:
    wait = AdaptiveWait(busy_ms=5, idle_ms=500, quiet_after_s=0.5, share=0.5)
    wait.start(10.0)
    assert wait.observe(0, 10.4) == 5  # inside the grace
    assert wait.observe(0, 10.5) == 5
    assert wait.observe(0, 10.7) == 100  # 0.2 s of quiet beyond the grace: half of it
    assert wait.observe(0, 11.1) == 300
    assert wait.observe(0, 12.0) == 500  # capped
    assert wait.observe(0, 99.0) == 500


def test_never_shorter_than_the_busy_wait() -> None:
    wait = AdaptiveWait(busy_ms=50, idle_ms=500, quiet_after_s=0.0)
    wait.start(0.0)
    assert wait.observe(0, 0.01) == 50  # half of 10 ms is below the busy wait


def test_first_record_snaps_back() -> None:
    wait = AdaptiveWait(busy_ms=5, idle_ms=1000, quiet_after_s=0.5)
    wait.start(0.0)
    assert wait.observe(0, 60.0) == 1000
    assert wait.observe(3, 60.2) == 5
    assert wait.observe(0, 60.3) == 5  # a new grace from that record


def test_idle_at_or_below_busy_means_a_fixed_wait() -> None:
    wait = AdaptiveWait(busy_ms=20, idle_ms=0, quiet_after_s=0.0)
    wait.start(0.0)
    assert [wait.observe(0, t) for t in (1.0, 10.0, 100.0)] == [20, 20, 20]


def test_share_sets_how_fast_it_grows() -> None:
    slow = AdaptiveWait(busy_ms=5, idle_ms=500, quiet_after_s=0.0, share=0.5)
    fast = AdaptiveWait(busy_ms=5, idle_ms=500, quiet_after_s=0.0, share=2.0)
    slow.start(0.0)
    fast.start(0.0)
    assert (slow.observe(0, 0.1), fast.observe(0, 0.1)) == (50, 200)


@pytest.mark.parametrize("bad", [{"busy_ms": -1}, {"quiet_after_s": -0.1}, {"share": 0.0}])
def test_bad_parameters_refused(bad: dict[str, float]) -> None:
    params: dict[str, float] = {"busy_ms": 5, "idle_ms": 500, "quiet_after_s": 0.5} | bad
    with pytest.raises(ValueError):
        AdaptiveWait(**params)  # type: ignore[arg-type]


class _Fetcher:
    def __init__(self) -> None:
        self._fetch_max_wait_ms = 5


class _Consumer:
    """Only the two attributes aiokafka's consumer keeps the fetch wait in."""

    def __init__(self) -> None:
        self._fetcher = _Fetcher()
        self._fetch_max_wait_ms = 5


def test_tuner_applies_each_change_to_the_consumer() -> None:
    consumer = _Consumer()
    now = [0.0]
    tuner = FetchWaitTuner(consumer, AdaptiveWait(5, 500, 0.0), lambda: now[0])
    assert tuner.wait_ms == 5
    now[0] = 0.4
    tuner.after_poll(0)
    assert (consumer._fetcher._fetch_max_wait_ms, consumer._fetch_max_wait_ms) == (200, 200)
    tuner.after_poll(2)
    assert consumer._fetcher._fetch_max_wait_ms == 5 == tuner.wait_ms


def test_a_consumer_not_started_is_left_alone() -> None:
    class Unstarted:
        _fetcher = None

    assert set_fetch_wait(Unstarted(), 100) is False
