from datetime import UTC, datetime

import pytest

from llmops.config import FakePool
from services.inference.health import HealthSnapshot, HealthWindow, percentile, pool_status

TS = datetime(2026, 1, 1, tzinfo=UTC)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_rates_cover_the_window_and_totals_are_cumulative() -> None:
    window = HealthWindow(window_s=10.0, started_at=0.0)
    for i in range(20):  # 20 requests over seconds 0..19, every 4th fails
        window.record(at=float(i), latency_ms=100.0 + i, output_tokens=5, error=i % 4 == 0)
    snap = window.snapshot(now=19.5)
    # Only completions at 9.5 s or later count: seconds 10..19, errors at 12 and 16.
    assert snap.requests_per_s == pytest.approx(10 / 10)
    assert snap.tokens_per_s == pytest.approx(50 / 10)
    assert snap.error_rate == pytest.approx(2 / 10)
    assert snap.latency_p50_ms == 114.0 and snap.latency_p99_ms == 119.0
    assert (snap.requests_total, snap.errors_total) == (20, 5)


def test_a_fresh_instance_divides_by_its_age_not_the_whole_window() -> None:
    window = HealthWindow(window_s=10.0, started_at=100.0)
    for _ in range(4):
        window.record(at=101.0, latency_ms=10.0, output_tokens=3, error=False)
    assert window.snapshot(now=102.0).requests_per_s == pytest.approx(4 / 2)
    # ... but never by less than a second.
    assert window.snapshot(now=100.2).requests_per_s == pytest.approx(4 / 1)


def test_an_idle_window_empties_but_keeps_its_totals() -> None:
    window = HealthWindow(window_s=5.0, started_at=0.0)
    window.record(at=1.0, latency_ms=10.0, output_tokens=3, error=True)
    snap = window.snapshot(now=60.0)
    assert snap.requests_per_s == snap.tokens_per_s == snap.error_rate == 0.0
    assert snap.latency_p99_ms == 0.0
    assert (snap.requests_total, snap.errors_total) == (1, 1)


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HealthWindow(window_s=0.0, started_at=0.0)


def test_pool_status_carries_the_pool_config_and_the_numbers() -> None:
    pool = FakePool(
        name="gpu-a",
        model="m",
        provider="aws",
        region="us-east-1",
        gpu="h100",
        cost_per_gpu_hour=2.5,
        cost_per_1k_tokens=0.02,
        capacity=16,
        adapters=["sql"],
    )
    health = HealthSnapshot(3.0, 90.0, 0.1, 120.0, 480.0, 42, 4)
    status = pool_status(
        pool,
        health,
        instance="host-1",
        phase="serving",
        healthy=True,
        in_flight=7,
        queue_depth=3,
        ts=TS,
    )
    assert status.pool == "gpu-a" and status.instance == "host-1" and status.ts == TS
    assert (status.provider, status.region, status.gpu) == ("aws", "us-east-1", "h100")
    assert status.models == ["m"] and status.adapters == ["sql"]
    assert (status.capacity, status.in_flight, status.queue_depth) == (16, 7, 3)
    assert (status.cost_per_1k_tokens, status.cost_per_gpu_hour) == (0.02, 2.5)
    assert status.tokens_per_s == 90.0 and status.requests_per_s == 3.0
    assert (status.requests_total, status.errors_total, status.error_rate) == (42, 4, 0.1)
    assert (status.latency_p50_ms, status.latency_p99_ms) == (120.0, 480.0)
    assert status.healthy


@pytest.mark.parametrize("phase", ["starting", "stopping"])
def test_only_a_serving_instance_is_healthy(phase: str) -> None:
    pool = FakePool(name="p", engine="fake")
    health = HealthSnapshot(0, 0, 0, 0, 0, 0, 0)
    status = pool_status(
        pool,
        health,
        instance="i",
        phase=phase,  # type: ignore[arg-type]
        healthy=True,
        in_flight=-1,
        queue_depth=-5,
        ts=TS,
    )
    assert not status.healthy and status.phase == phase
    assert status.in_flight == 0 and status.queue_depth == 0  # never negative on the wire
