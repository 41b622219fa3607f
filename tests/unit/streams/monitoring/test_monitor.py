from __future__ import annotations

import math

import numpy as np
import pytest

from llmops.monitoring_config import (
    DriftConfig,
    MonitoringSettings,
    ReferenceConfig,
    SafetyRule,
)
from schemas import QualityWindow
from streams.monitoring.monitor import QualityMonitor
from tests.unit.streams.monitoring.kit import simulated, window

LATENCY_ONLY = DriftConfig(features=["latency_ms"], persistence=2)


def latency_window(index: int, shift: float, rng: np.random.Generator) -> QualityWindow:
    return window(index, sample={"latency_ms": rng.normal(100.0 + shift, 10.0, 200).tolist()})


def settings(**changes: object) -> MonitoringSettings:
    base: dict[str, object] = {
        "safety": [],
        "drift": LATENCY_ONLY,
        "default_reference": ReferenceConfig(mode="baseline", baseline_responses=300),
    }
    return MonitoringSettings(**{**base, **changes})  # type: ignore[arg-type]


def test_drift_alerts_only_after_persistence_windows_and_resolves_when_it_clears() -> None:
    rng = np.random.default_rng(3)
    monitor = QualityMonitor(settings())
    for i in range(3):  # the baseline: 300 responses
        assert monitor.evaluate([latency_window(i, 0.0, rng)]).drift == []
    quiet = monitor.evaluate([latency_window(3, 0.0, rng)])
    assert [(r.statistic, r.drifted, r.streak) for r in quiet.drift] == [
        ("ks", False, 0),
        ("psi", False, 0),
    ]
    assert quiet.drift[0].reference == "baseline:first 300 responses"
    first = monitor.evaluate([latency_window(4, 30.0, rng)])
    assert (first.drift[0].drifted, first.drift[0].streak, first.alerts) == (True, 1, [])
    assert first.drift[0].p_adjusted is not None
    second = monitor.evaluate([latency_window(5, 30.0, rng)])
    assert second.drift[0].streak == 2
    assert [(a.kind, a.rule, a.state) for a in second.alerts] == [
        ("drift", "drift_latency_ms", "open")
    ]
    alert = second.alerts[0]
    assert alert.evidence["statistic"] == "ks" and alert.evidence["streak"] == "2"
    assert monitor.evaluate([latency_window(6, 30.0, rng)]).alerts == []  # still open
    cleared = monitor.evaluate([latency_window(7, 0.0, rng)])
    assert [(a.alert_id, a.state) for a in cleared.alerts] == [(alert.alert_id, "resolved")]


def test_a_replayed_window_does_not_count_twice() -> None:
    rng = np.random.default_rng(4)
    monitor = QualityMonitor(settings())
    for i in range(3):
        monitor.evaluate([latency_window(i, 0.0, rng)])
    shifted = latency_window(3, 30.0, rng)
    assert monitor.evaluate([shifted]).drift[0].streak == 1
    again = monitor.evaluate([shifted])
    assert again.drift[0].streak == 1 and again.alerts == []


def test_restored_streaks_and_open_alerts_carry_over_a_restart() -> None:
    rng = np.random.default_rng(5)
    history = [latency_window(i, 0.0, rng) for i in range(3)]
    before = QualityMonitor(settings())
    for w in history:
        before.evaluate([w])
    report = before.evaluate([latency_window(3, 30.0, rng)]).drift[0]
    after = QualityMonitor(settings())  # the agent loads what the store holds
    key = (
        (report.prompt_name, report.prompt_version, report.variant, report.pool, report.model),
        "",
    )
    naive = report.window_start.replace(tzinfo=None)  # as the store may hand it back
    after.restore([], [((key, "latency_ms"), naive, report.streak)])
    assert after.unloaded([history[0]]) == [key]  # read from the store as its windows come
    after.load_reference(key, history)
    opened = after.evaluate([latency_window(4, 30.0, rng)])
    assert [a.state for a in opened.alerts] == ["open"]
    again = QualityMonitor(settings())
    again.restore(opened.alerts, [((key, "latency_ms"), opened.drift[0].window_start, 2)])
    again.load_reference(key, history)
    assert again.evaluate([latency_window(5, 30.0, rng)]).alerts == []


def test_a_planted_refusal_rise_alerts_within_two_windows() -> None:
    """Below the ceiling, so it is the jump test against the baseline that catches it."""
    rng = np.random.default_rng(6)
    rule = SafetyRule(rate="refusal", max_rate=0.2, jump_alpha=0.01)
    monitor = QualityMonitor(settings(safety=[rule], drift=DriftConfig(features=[])))
    for i in range(3):
        assert monitor.evaluate([simulated(rng, i, n=400, refusal=0.05)]).alerts == []
    opened: list[int] = []
    for i in range(3, 5):
        found = monitor.evaluate([simulated(rng, i, n=400, refusal=0.10)])
        opened += [i for a in found.alerts if a.rule == "refusal_jump"]
    assert opened and opened[0] <= 4


def test_a_seeded_shift_is_detected_on_every_kind_of_feature() -> None:
    rng = np.random.default_rng(8)
    monitor = QualityMonitor(MonitoringSettings())
    for i in range(3):
        monitor.evaluate([simulated(rng, i)])
    drifted: set[str] = set()
    for i in range(3, 5):
        found = monitor.evaluate(
            [
                simulated(
                    rng,
                    i,
                    latency_shift=0.5,
                    chars_scale=1.5,
                    length_share=0.4,
                    embedding_shift=3.0,
                )
            ]
        )
        drifted |= {a.rule for a in found.alerts if a.kind == "drift"}
    assert drifted == {
        "drift_latency_ms",
        "drift_output_chars",
        "drift_finish_reason",
        "drift_embedding",
    }


@pytest.mark.parametrize("mode", ["baseline", "rolling"])
def test_an_unshifted_stream_alarms_at_most_at_the_false_alarm_rate(mode: str) -> None:
    rng = np.random.default_rng(2026)
    config = MonitoringSettings(default_reference=ReferenceConfig(mode=mode))  # type: ignore[arg-type]
    monitor = QualityMonitor(config)
    windows = 200
    alarmed = 0
    tests = 0
    for i in range(windows):
        segments = [simulated(rng, i, n=150, segment=f"plan={p}") for p in ("free", "pro")]
        found = monitor.evaluate([simulated(rng, i, n=300), *segments])
        tests += len(found.drift)
        # Statistical alarms: a ceiling is the user's line, crossed by the rate itself.
        alarmed += any(a.state == "open" and not a.rule.endswith("_rate") for a in found.alerts)
    assert tests > windows * 10  # the stream was tested, not skipped
    assert alarmed / windows <= config.drift.fdr


EMBEDDING_ONLY = DriftConfig(features=["embedding"], persistence=2)


def test_a_seeded_spread_of_the_embeddings_alerts_through_mmd_after_persistence() -> None:
    """A wider spread around the same centroid: the centroid distance stays under its
    threshold, the MMD test of the samples finds it, and its streak opens the alert."""
    rng = np.random.default_rng(21)
    monitor = QualityMonitor(settings(drift=EMBEDDING_ONLY))
    for i in range(3):
        monitor.evaluate([simulated(rng, i, segment="plan=pro")])
    first = monitor.evaluate([simulated(rng, 3, segment="plan=pro", embedding_scale=2.5)])
    by_statistic = {r.statistic: r for r in first.drift}
    mmd = by_statistic["mmd"]
    assert (mmd.feature, mmd.drifted, mmd.streak, mmd.current_size) == ("embedding", True, 1, 32)
    assert mmd.reference_size == 64  # the baseline: two windows of 200, 32 vectors each
    assert mmd.p_adjusted is not None and mmd.p_adjusted < 0.05
    assert not by_statistic["cosine"].drifted and by_statistic["cosine"].streak == 0
    assert first.alerts == []
    second = monitor.evaluate([simulated(rng, 4, segment="plan=pro", embedding_scale=2.5)])
    [alert] = second.alerts
    assert (alert.rule, alert.segment, alert.evidence["statistic"]) == (
        "drift_embedding",
        "plan=pro",
        "mmd",
    )
    assert alert.evidence["streak"] == "2" and alert.evidence["current_size"] == "32"


@pytest.mark.parametrize("mode", ["baseline", "rolling"])
def test_same_distribution_embeddings_alarm_at_most_at_the_false_alarm_rate(mode: str) -> None:
    rng = np.random.default_rng(99)
    config = settings(
        drift=DriftConfig(features=["embedding"]),  # persistence 2, as configured by default
        default_reference=ReferenceConfig(mode=mode, baseline_responses=600, rolling_windows=5),  # type: ignore[arg-type]
    )
    monitor = QualityMonitor(config)
    windows = 300
    tested = drifted = alarmed = 0
    for i in range(windows):
        found = monitor.evaluate([simulated(rng, i, n=120)])
        mmd = [r for r in found.drift if r.statistic == "mmd"]
        tested += len(mmd)
        drifted += sum(r.drifted for r in mmd)
        alarmed += any(a.state == "open" for a in found.alerts)
    assert tested >= windows - 5  # the samples were tested, not skipped
    fdr = config.drift.fdr
    # One p-valued test per window, valid at level fdr: about fdr of them drift by chance
    # (within two binomial standard errors), and the streak keeps the alarms below fdr.
    assert drifted / tested <= fdr + 2 * math.sqrt(fdr * (1 - fdr) / tested)
    assert alarmed / windows <= fdr
