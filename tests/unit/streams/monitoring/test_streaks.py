"""Streaks count consecutive windows, never a replayed one twice, and stay bounded."""

from __future__ import annotations

from streams.monitoring.reference import series_of
from streams.monitoring.streaks import Streaks
from tests.unit.streams.monitoring.kit import at, window


def test_consecutive_windows_count_and_a_miss_resets() -> None:
    streaks = Streaks()
    assert [streaks.count(window(i), "f", True) for i in range(3)] == [1, 2, 3]
    assert streaks.count(window(3), "f", False) == 0
    assert streaks.count(window(4), "f", True) == 1
    assert streaks.count(window(4), "g", True) == 1  # each name has its own


def test_a_window_again_recounts_from_the_one_before_and_an_older_one_changes_nothing() -> None:
    streaks = Streaks()
    for i in range(3):
        streaks.count(window(i), "f", True)
    assert streaks.count(window(2), "f", True) == 3  # re-emitted: still 3, not 4
    assert streaks.count(window(2), "f", False) == 0  # re-emitted emptier: recomputed
    assert streaks.count(window(0), "f", True) == 1  # an old replay reports itself only
    assert streaks.count(window(3), "f", True) == 1  # and the series went on from window 2


def test_restored_streaks_continue_and_naive_times_are_utc() -> None:
    streaks = Streaks()
    key = (series_of(window(5)), "f")
    streaks.restore([(key, at(5).replace(tzinfo=None), 4)])
    assert streaks.count(window(6), "f", True) == 5
    assert streaks.count(window(6), "f", True) == 5  # the same window again


def test_the_least_recently_counted_go_beyond_capacity() -> None:
    streaks = Streaks(capacity=2)
    for name in ("a", "b", "c"):
        streaks.count(window(0), name, True)
    assert len(streaks) == 2
    assert streaks.count(window(1), "a", True) == 1  # "a" was dropped: it starts again
    assert streaks.count(window(1), "c", True) == 2
