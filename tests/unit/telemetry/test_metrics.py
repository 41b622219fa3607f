"""Shared Prometheus metrics and the /metrics endpoint."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import REGISTRY

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
