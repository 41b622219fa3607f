"""Disparity ratios with intervals, the reference group, and the band rule."""

import math

import numpy as np
import pytest
from scipy import stats

from llmops.stats.fairness import Disparity, best_group, mean_ratio, outside_band, rate_ratio


def test_rate_ratio_katz_by_hand() -> None:
    # 30/200 against 15/300: RR = 3, se = sqrt(1/30 - 1/200 + 1/15 - 1/300).
    se = math.sqrt(1 / 30 - 1 / 200 + 1 / 15 - 1 / 300)
    z = stats.norm.ppf(0.975)
    got = rate_ratio(30, 200, 15, 300)
    assert got.ratio == pytest.approx(3.0)
    assert got.low == pytest.approx(3.0 * math.exp(-z * se))
    assert got.high == pytest.approx(3.0 * math.exp(z * se))
    assert (got.n_group, got.n_reference) == (200, 300)


def test_rate_ratio_covers_the_truth_at_its_level() -> None:
    # Seeded simulation: true ratio 1.5 (0.15 vs 0.10); a 95% interval covers it ~95% of the time.
    rng = np.random.default_rng(7)
    covered = 0
    runs = 2000
    for _ in range(runs):
        a, c = int(rng.binomial(800, 0.15)), int(rng.binomial(800, 0.10))
        d = rate_ratio(a, 800, c, 800)
        covered += d.low <= 1.5 <= d.high
    assert 0.93 <= covered / runs <= 0.97


def test_zero_cells_are_corrected_not_infinite() -> None:
    # Haldane-Anscombe: 0.5 added to every cell, so 10/100 vs 0/100 is (10.5/101)/(0.5/101) = 21.
    got = rate_ratio(10, 100, 0, 100)
    assert got.ratio == pytest.approx(21.0)
    assert all(math.isfinite(v) for v in (got.ratio, got.low, got.high))
    both_zero = rate_ratio(0, 100, 0, 100)
    assert both_zero.ratio == pytest.approx(1.0) and both_zero.low < 1.0 < both_zero.high
    both_all = rate_ratio(50, 50, 80, 80)
    assert both_all.low < 1.0 < both_all.high


def test_empty_group_is_uninformative() -> None:
    for got in (rate_ratio(0, 0, 5, 10), rate_ratio(5, 10, 0, 0)):
        assert (got.ratio, got.low, got.high) == (1.0, 0.0, math.inf)
        assert not outside_band(got, min_n=0)


def test_rate_ratio_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        rate_ratio(11, 10, 1, 10)
    with pytest.raises(ValueError):
        rate_ratio(1, 10, 1, 10, confidence=1.5)


def test_mean_ratio_delta_method_by_hand() -> None:
    # Latency 1200 ms (sd 300, n 400) against 1000 ms (sd 250, n 500).
    se = math.sqrt(300**2 / (400 * 1200**2) + 250**2 / (500 * 1000**2))
    z = stats.norm.ppf(0.975)
    got = mean_ratio(1200, 300**2, 400, 1000, 250**2, 500)
    assert got.ratio == pytest.approx(1.2)
    assert (got.low, got.high) == pytest.approx((1.2 * math.exp(-z * se), 1.2 * math.exp(z * se)))


def test_mean_ratio_edges() -> None:
    assert mean_ratio(1.0, 0.0, 1, 1.0, 0.0, 5).high == math.inf
    assert mean_ratio(0.0, 0.0, 10, 1.0, 0.1, 10).low == 0.0
    constant = mean_ratio(2.0, 0.0, 10, 1.0, 0.0, 10)
    assert (constant.ratio, constant.low, constant.high) == pytest.approx((2.0, 2.0, 2.0))
    with pytest.raises(ValueError):
        mean_ratio(1.0, -1.0, 10, 1.0, 0.1, 10)
    with pytest.raises(ValueError):
        mean_ratio(math.nan, 1.0, 10, 1.0, 0.1, 10)


def test_best_group_is_stable() -> None:
    rates = {"de": (30, 1000), "fr": (20, 1000), "ja": (1, 200), "ü\x00": (0, 3)}
    assert best_group(rates, min_n=100) == "ja"
    assert best_group(rates, min_n=1) == "ü\x00"
    assert best_group(rates, lower_is_better=False, min_n=100) == "de"
    assert best_group({"b": (1, 10), "a": (2, 20), "c": (1, 10)}) == "a"  # larger group wins ties
    assert best_group({"b": (1, 10), "c": (1, 10)}) == "b"
    assert best_group({"x": (0, 0)}) is None and best_group({}) is None


def test_planted_disparity_is_flagged_equal_groups_are_not() -> None:
    planted = rate_ratio(120, 1000, 60, 1000)  # twice the refusals
    assert outside_band(planted, min_n=500)
    assert not outside_band(planted, min_n=2000)  # not enough data for this rule
    equal = rate_ratio(61, 1000, 60, 1000)
    assert not outside_band(equal, min_n=100)
    lower = rate_ratio(30, 1000, 90, 1000)
    assert outside_band(lower, min_n=100)


def test_band_needs_the_whole_interval_outside() -> None:
    straddling = Disparity(1.4, 1.1, 1.8, 1000, 1000)
    assert not outside_band(straddling)
    assert outside_band(Disparity(1.4, 1.26, 1.6, 1000, 1000))
    assert outside_band(Disparity(0.6, 0.5, 0.79, 1000, 1000))
    with pytest.raises(ValueError):
        outside_band(straddling, low=1.3, high=1.2)
