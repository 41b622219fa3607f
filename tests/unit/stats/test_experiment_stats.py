"""Fixed-horizon experiment statistics against scipy, the delta method against a bootstrap,
sample ratio mismatch, and correction across metrics."""

import math

import numpy as np
import pytest
from scipy import stats

from llmops.stats.experiments import (
    compare_mann_whitney,
    compare_proportions,
    compare_ratio,
    compare_welch,
    correct,
    ratio_estimate,
    sample_ratio_mismatch,
)
from llmops.stats.multiple import holm


def test_proportions_agree_with_scipy_chi_square() -> None:
    # The pooled z test squared is Pearson's chi-square on the 2x2 table (no continuity
    # correction), with the same p-value.
    got = compare_proportions(100, 1000, 130, 1000)
    chi2, p, _, _ = stats.chi2_contingency([[130, 870], [100, 900]], correction=False)
    assert got.statistic**2 == pytest.approx(chi2, rel=1e-10)
    assert got.p_value == pytest.approx(p, rel=1e-10)
    assert (got.control, got.treatment) == (0.1, 0.13)
    assert got.difference.estimate == pytest.approx(0.03)
    assert got.relative == pytest.approx(0.3)
    half = 1.959963984540054 * math.sqrt(0.13 * 0.87 / 1000 + 0.1 * 0.9 / 1000)
    assert got.difference.low == pytest.approx(0.03 - half)
    assert got.difference.high == pytest.approx(0.03 + half)


def test_proportions_empty_and_zero_control() -> None:
    empty = compare_proportions(0, 0, 3, 10)
    assert (empty.p_value, empty.difference.low, empty.difference.high) == (1.0, -1.0, 1.0)
    zero = compare_proportions(0, 100, 5, 100)
    assert zero.relative is None and 0.0 < zero.p_value < 0.05


def _samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.lognormal(0.0, 1.0, 300), rng.lognormal(0.2, 1.2, 250)


def test_welch_agrees_with_scipy() -> None:
    control, treatment = _samples()
    got = compare_welch(control, treatment)
    expected = stats.ttest_ind(treatment, control, equal_var=False)
    ci = expected.confidence_interval(0.95)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert got.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert (got.difference.low, got.difference.high) == pytest.approx((ci.low, ci.high))
    assert got.difference.estimate == pytest.approx(treatment.mean() - control.mean())
    assert got.relative == pytest.approx((treatment.mean() - control.mean()) / control.mean())


def test_welch_without_spread_is_not_nan() -> None:
    assert compare_welch([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    assert compare_welch([1.0, 1.0], [2.0, 2.0]).p_value == 0.0


def test_mann_whitney_agrees_with_scipy_and_brute_force_hodges_lehmann() -> None:
    control, treatment = _samples()
    got = compare_mann_whitney(control, treatment)
    expected = stats.mannwhitneyu(treatment, control, alternative="two-sided")
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert got.statistic == expected.statistic
    pairs = np.sort((treatment[:, None] - control[None, :]).ravel())
    assert got.difference.estimate == pytest.approx(np.median(pairs), rel=1e-9)
    n, m = treatment.size, control.size
    k = math.floor(n * m / 2 - 1.959963984540054 * math.sqrt(n * m * (n + m + 1) / 12))
    assert got.difference.low == pytest.approx(pairs[k - 1], rel=1e-9)
    assert got.difference.high == pytest.approx(pairs[n * m - k], rel=1e-9)
    assert (got.control, got.treatment) == (np.median(control), np.median(treatment))


def _units(rng: np.random.Generator, n: int, cost: float) -> tuple[np.ndarray, np.ndarray]:
    requests = rng.poisson(5.0, n) + 1  # requests per user
    per_request = rng.gamma(2.0, cost / 2.0, n)  # user-level cost level: correlated requests
    return per_request * requests + rng.normal(0.0, 0.01, n), requests.astype(float)


def test_delta_method_variance_matches_a_seeded_bootstrap() -> None:
    rng = np.random.default_rng(11)
    x, y = _units(rng, 400, 0.02)
    got = ratio_estimate(x, y)
    assert got.ratio == pytest.approx(x.sum() / y.sum())
    index = rng.integers(0, x.size, size=(4000, x.size))
    boot = x[index].sum(axis=1) / y[index].sum(axis=1)
    assert math.sqrt(got.variance) == pytest.approx(boot.std(ddof=1), rel=0.08)
    # Dropping the covariance term (cost grows with requests) misses by twice the tolerance.
    no_cov = (x.var(ddof=1) / y.mean() ** 2 + x.mean() ** 2 * y.var(ddof=1) / y.mean() ** 4) / 400
    assert abs(math.sqrt(no_cov) / boot.std(ddof=1) - 1) > 0.15


def test_ratio_comparison_finds_a_planted_cost_rise_and_not_a_null() -> None:
    rng = np.random.default_rng(5)
    xc, yc = _units(rng, 2000, 0.02)
    xt, yt = _units(rng, 2000, 0.025)
    got = compare_ratio(xc, yc, xt, yt)
    assert got.p_value < 0.001 and got.difference.low > 0
    assert got.relative == pytest.approx(got.difference.estimate / got.control)
    xn, yn = _units(rng, 2000, 0.02)
    null = compare_ratio(xc, yc, xn, yn)
    assert null.p_value > 0.05 and null.difference.low < 0 < null.difference.high


def test_sample_ratio_mismatch_agrees_with_scipy_and_flags_52_48() -> None:
    planted = sample_ratio_mismatch([10_400, 9_600], [50, 50])
    expected = stats.chisquare([10_400, 9_600], [10_000, 10_000])
    assert planted.statistic == pytest.approx(expected.statistic) == pytest.approx(32.0)
    assert planted.p_value == pytest.approx(expected.pvalue)
    assert planted.mismatch
    rng = np.random.default_rng(3)
    a = int(rng.binomial(20_000, 0.5))
    balanced = sample_ratio_mismatch([a, 20_000 - a], [1, 1])
    assert not balanced.mismatch and balanced.p_value > 0.001
    exact = sample_ratio_mismatch([10_000, 10_000], [1, 1])
    assert exact.p_value == 1.0 and not exact.mismatch


def test_sample_ratio_mismatch_unequal_weights_and_edges() -> None:
    assert not sample_ratio_mismatch([9_010, 990], [90, 10]).mismatch
    assert sample_ratio_mismatch([8_800, 1_200], [90, 10]).mismatch
    assert sample_ratio_mismatch([100, 0, 3], [1, 1, 0]).mismatch  # traffic to a variant off
    assert sample_ratio_mismatch([0, 0], [1, 1]).p_value == 1.0
    with pytest.raises(ValueError):
        sample_ratio_mismatch([1, 2], [1])


def test_correction_across_metrics() -> None:
    p = [0.001, 0.02, 0.04, 0.3]
    assert correct(p, "holm") == holm(p)
    assert correct(p, "holm").rejected == (True, False, False, False)
    # BH is less strict: 0.02 * 4 / 2 = 0.04 <= 0.05.
    assert correct(p, "bh").rejected == (True, True, False, False)
    assert correct([0.01, 0.02, 0.03], "bh").rejected == (True, True, True)
    with pytest.raises(ValueError):
        correct(p, "bonferroni")  # type: ignore[arg-type]
