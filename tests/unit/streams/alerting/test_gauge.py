"""llmops_alert_open: set while open, removed on resolve, bounded in series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Gauge

from streams.alerting.gauge import LABELS, OpenAlertGauge, OpenAlerts
from tests.unit.streams.alerting.kit import alert


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make_gauge(registry: CollectorRegistry, limit: int = 1000) -> OpenAlertGauge:
    return OpenAlertGauge(
        limit,
        gauge=Gauge("alert_open", "open", list(LABELS), namespace="llmops", registry=registry),
        overflow=Gauge("alert_open_overflow", "overflow", namespace="llmops", registry=registry),
    )


def series(registry: CollectorRegistry) -> dict[tuple[str, ...], float]:
    found = {}
    for metric in registry.collect():
        if metric.name == "llmops_alert_open":
            for sample in metric.samples:
                found[tuple(sample.labels[name] for name in LABELS)] = sample.value
    return found


def overflow(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("llmops_alert_open_overflow")


def test_open_sets_one_resolve_removes(registry: CollectorRegistry) -> None:
    gauge = make_gauge(registry)
    gauge.update(alert())
    labels = ("safety", "refusal_rate", "critical", "support v3 / pool a")
    assert series(registry) == {labels: 1.0}
    gauge.update(alert())  # re-emitted while open: still one series
    assert series(registry) == {labels: 1.0}
    gauge.update(alert(state="resolved"))
    assert series(registry) == {}
    gauge.update(alert(state="resolved"))  # resolving twice is harmless
    assert series(registry) == {}


def test_severity_change_moves_the_series(registry: CollectorRegistry) -> None:
    gauge = make_gauge(registry)
    gauge.update(alert(severity="warning"))
    gauge.update(alert(severity="critical"))
    assert list(series(registry)) == [("safety", "refusal_rate", "critical", "support v3 / pool a")]


def test_alerts_without_ids_are_told_apart_by_rule_and_subject(
    registry: CollectorRegistry,
) -> None:
    gauge = make_gauge(registry)
    gauge.update(alert(alert_id="", subject="a"))
    gauge.update(alert(alert_id="", subject="b"))
    gauge.update(alert(alert_id="", subject="a", state="resolved"))
    assert [labels[3] for labels in series(registry)] == ["b"]


def test_beyond_the_limit_alerts_count_as_overflow_and_take_freed_places(
    registry: CollectorRegistry,
) -> None:
    gauge = make_gauge(registry, limit=3)
    for i in range(5):
        gauge.update(alert(alert_id=f"id{i}", subject=f"s{i}"))
    assert sorted(labels[3] for labels in series(registry)) == ["s0", "s1", "s2"]
    assert overflow(registry) == 2
    gauge.update(alert(alert_id="id4", subject="s4", state="resolved"))  # a waiting one
    assert overflow(registry) == 1
    gauge.update(alert(alert_id="id0", subject="s0", state="resolved"))  # frees a place
    assert sorted(labels[3] for labels in series(registry)) == ["s1", "s2", "s3"]
    assert overflow(registry) == 0


def test_many_hostile_subjects_stay_bounded(registry: CollectorRegistry) -> None:
    gauge = make_gauge(registry, limit=50)
    for i in range(5000):
        gauge.update(alert(alert_id=f"id{i}", subject=f"locale=\x00{'é' * 400}{i}"))
    assert len(series(registry)) == 50
    assert overflow(registry) == 4950


def test_waiting_alerts_are_bounded_too() -> None:
    state = OpenAlerts(limit=1, max_waiting=2)
    for i in range(10):
        state.apply(alert(alert_id=f"id{i}"))
    assert len(state.shown) == 1 and state.overflow == 2


def test_two_ids_with_the_same_labels_share_a_series(registry: CollectorRegistry) -> None:
    gauge = make_gauge(registry)
    gauge.update(alert(alert_id="x"))
    gauge.update(alert(alert_id="y"))
    gauge.update(alert(alert_id="x", state="resolved"))
    assert len(series(registry)) == 1
    gauge.update(alert(alert_id="y", state="resolved"))
    assert series(registry) == {}


def test_limit_is_bounded() -> None:
    with pytest.raises(ValueError, match="limit"):
        OpenAlerts(limit=0)


def test_replace_shows_exactly_the_open_alerts_read_back(registry: CollectorRegistry) -> None:
    gauge = make_gauge(registry, limit=2)
    for name in ("stale", "kept", "waiting-stale"):
        gauge.update(alert(alert_id=name, subject=name))
    assert overflow(registry) == 1
    # Read back from the store: "stale" was resolved by another worker meanwhile.
    gauge.replace(
        [
            alert(alert_id="kept", subject="kept"),
            alert(alert_id="new", subject="new", severity="info"),
            alert(alert_id="third", subject="third"),
            alert(alert_id="gone", subject="gone", state="resolved"),
        ]
    )
    assert sorted(labels[3] for labels in series(registry)) == ["kept", "new"]
    assert overflow(registry) == 1  # "third" waits; "waiting-stale" is gone
    gauge.update(alert(alert_id="new", subject="new", state="resolved"))
    assert sorted(labels[3] for labels in series(registry)) == ["kept", "third"]
    gauge.replace([])
    assert series(registry) == {} and overflow(registry) == 0
