"""Streaks: per (series, name), how many windows in a row a check found something. Pure.

A check that needs persistence (drift: an alert opens after `persistence` drifted windows)
counts here. A window evaluated again (re-emitted after a restart) recomputes its streak from
the one before it, and an older window replayed leaves the streak be, so a replay never
counts twice. The agent restores the latest streaks from the store at start and on a
rebalance; the least recently used beyond `capacity` are dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas import QualityWindow
from streams.monitoring.reference import SeriesKey, series_of

MAX_STREAKS = 200_000

StreakKey = tuple[SeriesKey, str]


@dataclass(frozen=True)
class Streak:
    window_start: datetime
    before: int  # the streak up to the window before this one
    streak: int  # including this window


class Streaks:
    def __init__(self, capacity: int = MAX_STREAKS) -> None:
        self._capacity = capacity
        self._streaks: OrderedDict[StreakKey, Streak] = OrderedDict()

    def __len__(self) -> int:
        return len(self._streaks)

    def restore(self, streaks: Iterable[tuple[StreakKey, datetime, int]]) -> None:
        """Replace what is in memory with the store's latest streaks."""
        self._streaks.clear()
        for key, start, streak in streaks:
            # The store's DateTime64(3, 'UTC') may come back naive: it is UTC.
            start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
            self._remember(key, Streak(start, max(streak - 1, 0), streak))

    def count(self, window: QualityWindow, name: str, found: bool) -> int:
        """The streak of `name` in the window's series including this window."""
        key = (series_of(window), name)
        known = self._streaks.get(key)
        start = window.window_start
        if known is None:
            before = 0
        elif start == known.window_start:
            before = known.before  # the same window again
        elif start > known.window_start:
            before = known.streak
        else:
            return 1 if found else 0  # an older window replayed: leave the streak be
        streak = before + 1 if found else 0
        self._remember(key, Streak(start, before, streak))
        return streak

    def _remember(self, key: StreakKey, streak: Streak) -> None:
        self._streaks[key] = streak
        self._streaks.move_to_end(key)
        while len(self._streaks) > self._capacity:
            self._streaks.popitem(last=False)
