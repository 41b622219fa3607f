"""Shared Prometheus metrics and the /metrics endpoint."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from llmops.local.clickhouse_server.metrics import StoreMetrics
from llmops.local.procs import free_port
from llmops.telemetry import metrics
from llmops.telemetry.metrics import (
    count_dead_letter,
    count_produced,
    start_metrics_server,
    track,
)


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_track_counts_times_and_holds_in_flight() -> None:
    consumed = sample("llmops_records_consumed_total", service="unit", topic="t1")
    observed = sample("llmops_processing_seconds_count", service="unit", topic="t1")
    with track("unit", "t1"):
        assert sample("llmops_in_flight", service="unit") == 1
    assert sample("llmops_in_flight", service="unit") == 0
    assert sample("llmops_records_consumed_total", service="unit", topic="t1") == consumed + 1
    assert sample("llmops_processing_seconds_count", service="unit", topic="t1") == observed + 1


def test_track_releases_in_flight_on_error() -> None:
    with pytest.raises(RuntimeError), track("unit-err", "t"):
        raise RuntimeError("boom")
    assert sample("llmops_in_flight", service="unit-err") == 0
    assert sample("llmops_processing_seconds_count", service="unit-err", topic="t") == 1


def test_produced_and_dead_letters() -> None:
    before = sample("llmops_records_produced_total", service="unit", topic="out")
    count_produced("unit", "out", 3)
    assert sample("llmops_records_produced_total", service="unit", topic="out") == before + 3
    dead = sample("llmops_dead_letters_total", service="unit", kind="not_json")
    count_dead_letter("unit", "not_json")
    assert sample("llmops_dead_letters_total", service="unit", kind="not_json") == dead + 1


def test_metrics_endpoint_serves_the_shared_metrics() -> None:
    port = free_port()
    start_metrics_server(port)
    start_metrics_server(port)  # a second start of the same address is a no-op
    count_produced("unit-http", "llm.responses")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'llmops_records_produced_total{service="unit-http",topic="llm.responses"} 1.0' in text
    for name in ("llmops_processing_seconds", "llmops_in_flight", "llmops_dead_letters"):
        assert f"# TYPE {name}" in text


def test_port_zero_disables_and_bad_ports_are_refused() -> None:
    servers = dict(metrics._servers)
    start_metrics_server(0)
    assert metrics._servers == servers
    with pytest.raises(ValueError):
        start_metrics_server(70000)


def test_bucket_edges_users_see_are_unchanged() -> None:
    """The request-seconds edges are what dashboards and alerts are written against."""
    assert metrics.LATENCY_BUCKETS == (
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 120.0, 300.0,
    )  # fmt: skip
    assert metrics.STEP_BUCKETS == (
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    )  # fmt: skip
    assert StoreMetrics(CollectorRegistry()).latency._upper_bounds == [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        30.0, float("inf"),
    ]  # fmt: skip


def test_latency_ranges_come_from_the_one_set() -> None:
    assert metrics.latency_buckets(0.01) == (0.001, 0.0025, 0.005, 0.01)
    assert metrics.latency_buckets(300.0) == metrics.LATENCY_BUCKETS
    with pytest.raises(ValueError, match="not a latency bucket edge"):
        metrics.latency_buckets(3.0)
