"""One contract for every window check: run over ordinary, planted and hostile group windows,
a check is pure (inputs untouched, the same answer twice), says only what its kind and its
windows allow, and fails on nothing a worker could receive."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

import streams.monitors.drivers  # noqa: F401  (registers the shipped checks)
from llmops.monitoring_config import DriftConfig, MonitoringSettings, ReferenceConfig
from schemas import DriftReport, QualityWindow
from streams.monitoring.reference import Reference, group_of, merge_reference
from streams.monitoring.streaks import Streaks
from streams.monitors.base import Referenced
from streams.monitors.factory import CHECKS, create_checks
from tests.unit.streams.monitoring.kit import simulated, window

SEGMENTS = ("", "locale=en", "locale=de", "locale=fr")
SETTINGS = MonitoringSettings(
    drift=DriftConfig(min_current=10, min_reference=20),
    default_reference=ReferenceConfig(mode="rolling"),
)


def reference(index: int, segment: str, rng: np.random.Generator) -> Reference:
    past = [simulated(rng, i, segment=segment) for i in range(index)]
    return merge_reference(past, f"rolling:last {index} windows")


def ordinary(rng: np.random.Generator) -> list[Referenced]:
    return [(simulated(rng, 5, segment=s), reference(5, s, rng)) for s in SEGMENTS]


def planted(rng: np.random.Generator) -> list[Referenced]:
    """Everything at once: latency and embeddings shifted, refusals and PII up, one locale
    refused far more than the others."""
    return [
        (
            simulated(
                rng,
                5,
                segment=s,
                refusal=0.6 if s == "locale=de" else 0.3,
                pii=0.2,
                error=0.2,
                latency_shift=1.0,
                embedding_shift=3.0,
            ),
            reference(5, s, rng),
        )
        for s in SEGMENTS
    ]


def hostile() -> list[Referenced]:
    """Windows a careless or hostile producer could make: empty, no reference, extreme and
    inconsistent numbers, a segment that is no attribute, one sample value."""
    extreme = window(
        1,
        segment="locale=xx",
        responses=2**40,
        rates={"refusal": (2**40, 2**40), "error": (0, 2**40), "pii_output": (5, 3)},
        sample={"latency_ms": [0.0, 1e15, -1e15, 5e-324], "output_chars": [7.0]},
        categories={"finish_reason": {"stop": 2**40, "": 0}},
        embedding_sum=[1e15] * 8,
        embedded=1,
    )
    empty = window(1, segment="", responses=0)
    odd = window(1, segment="no-equals-sign", responses=3, rates={"refusal": (3, 3)})
    same = merge_reference([window(0, segment="locale=xx", responses=1)], "pinned:x")
    return [(extreme, same), (empty, None), (odd, None)]


CASES: dict[str, Callable[[], list[Referenced]]] = {
    "ordinary": lambda: ordinary(np.random.default_rng(7)),
    "planted": lambda: planted(np.random.default_rng(8)),
    "hostile": hostile,
    "nothing": lambda: [],
}


def answer(report: DriftReport) -> dict[str, object]:
    return report.model_dump(exclude={"event_id"})


def dumps(windows: Sequence[Referenced]) -> list[object]:
    return [(w.model_dump(), repr(r)) for w, r in windows]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", CHECKS.names())
def test_a_check_is_pure_bounded_and_speaks_of_its_own_windows(name: str, case: str) -> None:
    [check] = create_checks([name])
    windows = CASES[case]()
    before = dumps(windows)
    first = check.evaluate(windows, SETTINGS, Streaks())
    again = check.evaluate(windows, SETTINGS, Streaks())
    assert dumps(windows) == before  # inputs untouched
    # The same windows and streaks: the same answer (each report has an event id of its own).
    assert first.conditions == again.conditions
    assert [answer(r) for r in first.reports] == [answer(r) for r in again.reports]
    groups = {group_of(w) for w, _ in windows}
    segments = {w.segment for w, _ in windows}
    for condition in first.conditions:
        assert condition.kind == name
        assert condition.group in groups and condition.segment in segments
        assert condition.rule and condition.message and condition.severity
        assert all(isinstance(v, str) for v in condition.evidence.values())
    for report in first.reports:
        assert (report.segment in segments) and math.isfinite(report.value)
        assert report.p_value is None or 0.0 <= report.p_value <= 1.0
    if not windows:
        assert (list(first.reports), list(first.conditions)) == ([], [])


@pytest.mark.parametrize("name", CHECKS.names())
def test_a_check_finds_something_planted_and_is_quiet_on_ordinary_windows(name: str) -> None:
    [check] = create_checks([name])
    streaks = Streaks()
    ordinary_result = check.evaluate(ordinary(np.random.default_rng(7)), SETTINGS, streaks)
    planted_result = check.evaluate(planted(np.random.default_rng(8)), SETTINGS, streaks)
    assert not any(c.active for c in ordinary_result.conditions)
    if name == "drift":  # drift alerts after `persistence` windows: the planted one counts
        assert any(r.drifted and r.streak == 1 for r in planted_result.reports)
    else:
        assert any(c.active for c in planted_result.conditions)


def test_a_check_list_without_drift_writes_no_drift_rows() -> None:
    from streams.monitoring.monitor import QualityMonitor

    windows: list[QualityWindow] = [simulated(np.random.default_rng(1), i) for i in range(8)]
    settings = SETTINGS.model_copy(update={"checks": ["safety", "fairness"]})
    monitor = QualityMonitor(settings)
    assert all(monitor.evaluate([w]).drift == [] for w in windows)
    full = QualityMonitor(SETTINGS)
    assert any(full.evaluate([w]).drift for w in windows)
