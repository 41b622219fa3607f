"""Parked requests: woken by heartbeats, bounded in number, never past their wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.router.waiting import PoolWait

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_wait_is_the_setting_cut_at_the_deadline() -> None:
    waiting = PoolWait(wait_for_pool_s=30.0, max_parked=10)
    assert waiting.wait_s(T0, None) == 30.0
    assert waiting.wait_s(T0, T0 + timedelta(seconds=5)) == 5.0
    assert waiting.wait_s(T0, T0 - timedelta(seconds=5)) == 0.0


def test_no_waiting_when_switched_off_or_full() -> None:
    assert not PoolWait(wait_for_pool_s=0.0, max_parked=10).can_park()
    assert not PoolWait(wait_for_pool_s=30.0, max_parked=0).can_park()


async def test_a_heartbeat_wakes_the_parked_requests() -> None:
    waiting = PoolWait(wait_for_pool_s=30.0, max_parked=10)
    pool_back = False
    attempts = 0

    def attempt() -> str | None:
        nonlocal attempts
        attempts += 1
        return "routed" if pool_back else None

    task = asyncio.ensure_future(waiting.retry(attempt, 30.0))
    await asyncio.sleep(0)  # the task runs up to its first wait
    assert waiting.parked == 1
    pool_back = True
    waiting.wake()
    assert await task == "routed"
    assert attempts == 1  # one wake-up, one try: no polling in between
    assert waiting.parked == 0


async def test_the_bound_counts_the_parked() -> None:
    waiting = PoolWait(wait_for_pool_s=30.0, max_parked=1)
    task = asyncio.ensure_future(waiting.retry(lambda: None, 30.0))
    await asyncio.sleep(0)
    assert waiting.parked == 1 and not waiting.can_park()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert waiting.parked == 0 and waiting.can_park()


async def test_gives_up_when_the_wait_ends() -> None:
    waiting = PoolWait(wait_for_pool_s=30.0, max_parked=10)
    assert await waiting.retry(lambda: None, 0.05) is None
    assert waiting.parked == 0 and waiting.parked_total == 1
