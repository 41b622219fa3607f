"""The report's analysis on fixed data: agreement with scipy, a planted rise, a planted SRM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from llmops.experiments.analysis import (
    Moments,
    UnitMoments,
    VariantData,
    analyze,
    ratio_comparison,
    ratio_from_moments,
    welch_from_moments,
)
from llmops.experiments.events import VariantSpec, start, with_weights
from llmops.experiments.metrics import CONTINUOUS, COST, RATES
from llmops.experiments.report import analysis_json, definition_from_rows, metrics_for
from llmops.stats.experiments import compare_ratio, compare_welch, ratio_estimate
from streams.agents.feedback import experiment_row

METRICS = [*RATES, *CONTINUOUS, COST]


def _moments(values: np.ndarray) -> Moments:
    return Moments(int(values.size), float(values.sum()), float((values**2).sum()))


def _units(x: np.ndarray, y: np.ndarray) -> UnitMoments:
    return UnitMoments(
        int(x.size),
        float(x.sum()),
        float(y.sum()),
        float((x * x).sum()),
        float((y * y).sum()),
        float((x * y).sum()),
    )


def test_welch_from_moments_agrees_with_scipy_on_the_raw_values() -> None:
    rng = np.random.default_rng(7)
    control, treatment = rng.normal(10, 2, 400), rng.normal(10.5, 3, 300)
    raw = compare_welch(control, treatment)
    summed = welch_from_moments(_moments(control), _moments(treatment))
    assert summed.p_value == pytest.approx(raw.p_value, rel=1e-6)
    assert summed.difference.low == pytest.approx(raw.difference.low, rel=1e-6)
    assert summed.difference.high == pytest.approx(raw.difference.high, rel=1e-6)


def test_the_delta_method_from_moments_agrees_with_the_array_version() -> None:
    rng = np.random.default_rng(3)
    y_c, y_t = rng.integers(1, 8, 500).astype(float), rng.integers(1, 8, 450).astype(float)
    x_c, x_t = y_c * rng.gamma(2, 0.001, 500), y_t * rng.gamma(2, 0.0012, 450)
    ratio, variance = ratio_from_moments(_units(x_c, y_c))
    reference = ratio_estimate(x_c, y_c)
    assert ratio == pytest.approx(reference.ratio)
    assert variance == pytest.approx(reference.variance, rel=1e-6)
    mine, _ = ratio_comparison(_units(x_c, y_c), _units(x_t, y_t))
    theirs = compare_ratio(x_c, y_c, x_t, y_t)
    assert mine.p_value == pytest.approx(theirs.p_value, rel=1e-6)
    assert mine.difference.low == pytest.approx(theirs.difference.low, rel=1e-6)


def _arm(rng: np.random.Generator, n: int, refusal: float, latency: float) -> VariantData:
    refused = int(rng.binomial(n, refusal))
    errors = int(rng.binomial(n, 0.01))
    lat = rng.lognormal(np.log(latency), 0.3, n)
    ttft = rng.lognormal(np.log(40), 0.3, n)
    tokens = rng.poisson(80, n).astype(float)
    cost = tokens * 1e-6
    d = VariantData(responses=n, units=n)
    for m in RATES:
        d.rates[m.name] = (errors, n) if m.name == "error_rate" else (0, n)
    d.rates["refusal_rate"] = (refused, n)
    d.rates["safety_flag_rate"] = (refused, n)
    for name, values in (("latency_ms", lat), ("ttft_ms", ttft), ("output_tokens", tokens)):
        d.moments[name] = _moments(values)
        d.quantiles[name] = (float(np.quantile(values, 0.5)), float(np.quantile(values, 0.95)))
    d.samples = {"latency_ms": lat[:2000], "ttft_ms": ttft[:2000]}
    d.ratio = _units(cost, np.ones(n))
    return d


def test_a_planted_five_point_refusal_rise_at_5000_per_arm_is_found() -> None:
    rng = np.random.default_rng(11)
    data = {"control": _arm(rng, 5000, 0.10, 300), "new": _arm(rng, 5000, 0.15, 300)}
    analysis = analyze("exp", "control", data, METRICS, {"control": 0.5, "new": 0.5})
    refusal = next(r for r in analysis.results if r.metric == "refusal_rate")
    assert refusal.direction == "worse" and refusal.significant
    assert refusal.difference.low < 0.05 < refusal.difference.high
    assert refusal.cs_low > 0  # the confidence sequence excludes no change
    assert refusal.test == "two-proportion z"
    assert analysis.srm is not None and not analysis.srm.mismatch
    assert any("WORSE" in line and "refusal_rate" in line for line in analysis.verdict)
    latency = next(r for r in analysis.results if r.metric == "latency_ms")
    assert latency.test == "Mann-Whitney U" and not latency.significant
    cost = next(r for r in analysis.results if r.metric == "cost_per_request")
    assert cost.test == "delta method z"
    doc = analysis_json(analysis)
    assert {m["metric"] for m in doc["metrics"]} >= {"refusal_rate", "cost_per_request"}


def test_an_a_a_experiment_says_no_difference_yet() -> None:
    rng = np.random.default_rng(5)
    data = {"control": _arm(rng, 3000, 0.1, 300), "new": _arm(rng, 3000, 0.1, 300)}
    analysis = analyze("exp", "control", data, METRICS, {"control": 0.5, "new": 0.5})
    assert not any(r.significant for r in analysis.results)
    assert analysis.verdict[-1].startswith("no significant difference between new and control")


def test_a_planted_sample_ratio_mismatch_is_said_loudly() -> None:
    rng = np.random.default_rng(2)
    data = {"control": _arm(rng, 5000, 0.1, 300), "new": _arm(rng, 5000, 0.1, 300)}
    data["new"].units = 4600  # 8% of the treatment's users lost before logging
    analysis = analyze("exp", "control", data, METRICS, {"control": 0.5, "new": 0.5})
    assert analysis.srm is not None and analysis.srm.mismatch and analysis.srm.p_value < 0.001
    assert analysis.verdict[0].startswith("SAMPLE RATIO MISMATCH")
    # 5000 vs 4950 is chance, not a mismatch.
    data["new"].units = 4950
    assert not analyze("exp", "control", data, METRICS, {"control": 0.5, "new": 0.5}).srm.mismatch  # type: ignore[union-attr]


def test_the_definition_counts_the_srm_from_the_last_allocation_change() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    first = start("e", "p", [VariantSpec("a", "p", 1, 50), VariantSpec("b", "p", 2, 50)], t0)
    later = with_weights(first, {"a": 20, "b": 80}, t0 + timedelta(hours=1), "more b")
    rows = [experiment_row(first), experiment_row(later)]
    definition = definition_from_rows(rows)
    assert definition is not None
    assert definition.since == t0 + timedelta(hours=1)
    assert definition.shares == {"a": 0.2, "b": 0.8}
    assert definition.control == "a"
    assert definition_from_rows([]) is None


def test_feedback_and_eval_scores_join_the_metrics_when_present() -> None:
    d = VariantData()
    d.moments["feedback_score"] = Moments(3, 12.0, 50.0)
    d.moments["eval_faithfulness_score"] = Moments(3, 12.0, 50.0)
    names = [m.name for m in metrics_for({"a": d})]
    assert "feedback_score" in names and "eval_faithfulness_score" in names
    assert "thumbs_up_rate" not in names
