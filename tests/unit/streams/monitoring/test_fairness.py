from __future__ import annotations

import numpy as np
import pytest

from llmops.monitoring_config import FairnessConfig
from llmops.stats.fairness import rate_ratio
from streams.monitoring.fairness import fairness_conditions, quantile_interval, rate_of
from tests.unit.streams.monitoring.kit import simulated, window

CONFIG = FairnessConfig()


def flagged(conditions: list) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(c.rule, c.segment) for c in conditions if c.active}


def test_a_planted_refusal_disparity_is_flagged_for_that_value_only() -> None:
    windows = [
        window(1, segment="locale=en", responses=400, rates={"refusal": (20, 400)}),
        window(1, segment="locale=fr", responses=400, rates={"refusal": (22, 400)}),
        window(1, segment="locale=de", responses=400, rates={"refusal": (100, 400)}),
        window(1, segment="", responses=1200, rates={"refusal": (142, 1200)}),
    ]
    conditions = fairness_conditions(windows, CONFIG)
    assert flagged(conditions) == {("fairness_refusal", "locale=de")}
    de = next(c for c in conditions if c.segment == "locale=de")
    expected = rate_ratio(100, 400, 20, 400)
    assert float(de.evidence["value"]) == pytest.approx(expected.ratio, rel=1e-5)
    assert float(de.evidence["low"]) > 1.25
    assert de.evidence["reference"] == "best group locale=en"
    # every judged value gets a condition (the inactive ones resolve earlier alerts)
    assert {c.segment for c in conditions} == {"locale=en", "locale=fr", "locale=de"}


def test_equal_groups_are_not_flagged_over_many_windows() -> None:
    rng = np.random.default_rng(11)
    for i in range(100):
        windows = [simulated(rng, i, n=150, segment=f"plan={p}") for p in ("free", "pro", "team")]
        assert flagged(fairness_conditions(windows, CONFIG)) == set(), i


def test_too_small_groups_are_not_judged() -> None:
    windows = [
        window(1, segment="locale=en", responses=400, rates={"refusal": (20, 400)}),
        window(1, segment="locale=de", responses=29, rates={"refusal": (20, 29)}),
    ]
    assert [c.segment for c in fairness_conditions(windows, CONFIG)] == ["locale=en"]


def test_a_latency_p95_disparity_is_flagged_by_a_ratio_of_quantiles() -> None:
    rng = np.random.default_rng(5)
    windows = [
        simulated(rng, 1, n=400, segment="plan=free", latency_shift=0.6),
        simulated(rng, 1, n=400, segment="plan=pro"),
    ]
    found = fairness_conditions(windows, FairnessConfig(metrics=["latency_p95"]))
    assert flagged(found) == {("fairness_latency_p95", "plan=free")}


def test_quantile_interval_covers_the_sample_quantile() -> None:
    values = list(range(1, 101))
    estimate, low, high = quantile_interval(values, 0.95, 0.95)
    assert low <= estimate <= high and low >= 85 and high <= 100


def test_safety_flag_uses_the_window_s_own_rate_or_bounds_it_by_the_parts() -> None:
    own = window(1, rates={"safety_flag": (3, 50), "toxic": (9, 50)})
    parts = window(1, rates={"pii_output": (2, 50), "toxic": (1, 50), "unsupported": (4, 20)})
    assert rate_of(own, "safety_flag") == (3, 50)
    assert rate_of(parts, "safety_flag") == (7, 50)
