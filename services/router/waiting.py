"""Requests that found no healthy pool wait for one, instead of failing at once.

While the only pool restarts (killed, then started again by its supervisor) there is a span of
seconds with no live pool. A request arriving then is parked: it is routed again whenever a
heartbeat arrives (the board may have changed) and at least every `RETRY_S` (clock rules:
cooldowns, a beat going stale), until a pool takes it or its wait ends (`wait_for_pool_s`,
never past the request's deadline); then it is answered `no_healthy_pool`. At most
`max_parked` wait at a time: beyond that a request is answered at once, so a long outage never
holds unbounded work. A parked request's offset stays uncommitted until it is routed or
answered (its handler returns the wait as pending work), so a router restart loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")
# A parked request tries again at least this often, heartbeat or not.
RETRY_S = 1.0


class PoolWait:
    def __init__(self, wait_for_pool_s: float, max_parked: int) -> None:
        self.wait_for_pool_s = wait_for_pool_s
        self.max_parked = max_parked
        self.parked = 0
        self.parked_total = 0
        self._changed = asyncio.Event()

    def can_park(self) -> bool:
        return self.wait_for_pool_s > 0 and self.parked < self.max_parked

    def wait_s(self, now: datetime, deadline: datetime | None) -> float:
        """How long a request arriving `now` may wait: the setting, cut at its deadline."""
        if deadline is None:
            return self.wait_for_pool_s
        return max(min(self.wait_for_pool_s, (deadline - now).total_seconds()), 0.0)

    def wake(self) -> None:
        """The pools may have changed (a heartbeat arrived): every parked request tries again."""
        if self.parked:
            self._changed.set()
            self._changed = asyncio.Event()

    async def retry(self, attempt: Callable[[], T | None], wait_s: float) -> T | None:
        """`attempt()` after each wake-up until it gives a result; None once `wait_s` passed."""
        self.parked += 1
        self.parked_total += 1
        until = time.monotonic() + wait_s
        try:
            while (left := until - time.monotonic()) > 0:
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, RETRY_S)):
                        await changed.wait()
                result = attempt()
                if result is not None:
                    return result
            return None
        finally:
            self.parked -= 1
