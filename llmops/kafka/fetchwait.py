"""How long a consumer's fetches wait at the broker: short under traffic, long when quiet.

Tansu answers a fetch only when its wait runs out, so a short wait is what keeps a hop fast,
and also what makes an idle consumer cost a broker round trip every few milliseconds. The
policy: the short wait while records keep coming and for `quiet_after_s` after the last one;
then a wait that grows with the quiet time (a `share` of it) up to `idle_ms`; the first record
brings the short wait back. A consumer quiet for T seconds thus waits at most share * T, so the
first record after a pause is late by a fraction of the pause, never by more than `idle_ms`.

Pure: the caller passes the clock (monotonic seconds) and applies the wait it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AdaptiveWait:
    busy_ms: int
    idle_ms: int
    quiet_after_s: float = 0.5
    share: float = 0.5
    last_record_at: float = field(default=0.0)

    def __post_init__(self) -> None:
        if self.busy_ms < 0 or self.quiet_after_s < 0 or self.share <= 0:
            raise ValueError("busy_ms and quiet_after_s must be >= 0, share > 0")
        self.idle_ms = max(self.idle_ms, self.busy_ms)  # an idle wait below busy: no adapting

    def start(self, now: float) -> int:
        """Begin as if a record just came: the first fetches are quick."""
        self.last_record_at = now
        return self.busy_ms

    def observe(self, records: int, now: float) -> int:
        """`records` taken by the poll that ended at `now`; the wait for the next fetches."""
        if records > 0:
            self.last_record_at = now
            return self.busy_ms
        return self.wait(now)

    def wait(self, now: float) -> int:
        quiet_s = now - self.last_record_at - self.quiet_after_s
        if quiet_s <= 0:
            return self.busy_ms
        return round(min(max(quiet_s * 1000 * self.share, self.busy_ms), self.idle_ms))


def set_fetch_wait(consumer: Any, wait_ms: int) -> bool:
    """Change a started aiokafka consumer's fetch wait (fixed at construction in its API).

    Its Fetcher reads `_fetch_max_wait_ms` each time it builds a fetch request, so the new wait
    applies from the next fetch. False when this aiokafka has no such attribute (the wait then
    stays as constructed: correct, only not adaptive).
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
        return False
    fetcher._fetch_max_wait_ms = wait_ms
    consumer._fetch_max_wait_ms = wait_ms  # what a fetcher made again later starts with
    return True


class FetchWaitTuner:
    """An AdaptiveWait applied to one consumer: call `after_poll` after every poll."""

    def __init__(self, consumer: Any, policy: AdaptiveWait, clock: Callable[[], float]) -> None:
        self._consumer = consumer
        self._policy = policy
        self._clock = clock
        # What the consumer's fetches use now: they start quick (as constructed).
        self.wait_ms = policy.start(clock())

    def after_poll(self, records: int) -> None:
        wait = self._policy.observe(records, self._clock())
        if wait != self.wait_ms and set_fetch_wait(self._consumer, wait):
            self.wait_ms = wait
