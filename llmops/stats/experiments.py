"""Fixed-horizon experiment statistics per metric kind, sample ratio mismatch, correction. Pure.

Every comparison is treatment against control and returns the same `Comparison`: the estimate
per arm, the difference (treatment - control) with its interval, the relative effect
(difference / control estimate) and a p-value. The tests are scipy's where scipy has them:
the pooled two-proportion z test for rates, Welch's t (`scipy.stats.ttest_ind`,
`equal_var=False`) or Mann-Whitney (`scipy.stats.mannwhitneyu`) for continuous metrics, the
delta method for ratio metrics whose unit of randomization is not the unit of the ratio (cost
per request: per-unit sums of cost and of requests), and `scipy.stats.chisquare` for sample
ratio mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from llmops.stats.multiple import Adjusted, benjamini_hochberg, holm
from llmops.stats.proportions import _check_counts, two_proportion_z_test, z_for
from llmops.stats.results import Interval

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class Comparison:
    """Treatment against control on one metric.

    `difference` is treatment - control (for Mann-Whitney: the Hodges-Lehmann shift, the
    median of all treatment - control differences), `relative` is the difference over the
    control estimate (None when the control estimate is 0), `p_value` the two-sided p-value.
    """

    test: str
    control: float
    treatment: float
    difference: Interval
    relative: float | None
    statistic: float
    p_value: float
    n_control: int
    n_treatment: int


def _relative(difference: float, control: float) -> float | None:
    return None if control == 0.0 else difference / control


def _finite(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite numbers")
    return array


def compare_proportions(
    successes_control: int,
    trials_control: int,
    successes_treatment: int,
    trials_treatment: int,
    confidence: float = 0.95,
) -> Comparison:
    """Rates: the pooled two-proportion z test (`proportions.two_proportion_z_test`).

    The interval of the difference is the unpooled Wald interval,
    d ± z sqrt(p_t(1-p_t)/n_t + p_c(1-p_c)/n_c): the pooled variance is right under the null,
    the unpooled one around the observed difference. An empty arm gives the interval [-1, 1].
    """
    _check_counts(successes_control, trials_control)
    _check_counts(successes_treatment, trials_treatment)
    z = z_for(confidence)
    result = two_proportion_z_test(
        successes_treatment, trials_treatment, successes_control, trials_control
    )
    p_c = successes_control / trials_control if trials_control else 0.0
    p_t = successes_treatment / trials_treatment if trials_treatment else 0.0
    difference = p_t - p_c
    if trials_control == 0 or trials_treatment == 0:
        interval = Interval(difference, -1.0, 1.0)
    else:
        half = z * math.sqrt(
            p_t * (1.0 - p_t) / trials_treatment + p_c * (1.0 - p_c) / trials_control
        )
        interval = Interval(difference, max(-1.0, difference - half), min(1.0, difference + half))
    return Comparison(
        "two-proportion z",
        p_c,
        p_t,
        interval,
        _relative(difference, p_c),
        result.statistic,
        result.p_value,
        trials_control,
        trials_treatment,
    )


def compare_welch(control: ArrayLike, treatment: ArrayLike, confidence: float = 0.95) -> Comparison:
    """Continuous metric, means: Welch's t test and its interval from scipy (Welch-Satterthwaite
    degrees of freedom). Needs at least two values per arm."""
    c = _finite(control, "control")
    t = _finite(treatment, "treatment")
    if c.size < 2 or t.size < 2:
        raise ValueError("Welch's t test needs at least two values per arm")
    z_for(confidence)  # validates the level
    mean_c, mean_t = float(c.mean()), float(t.mean())
    difference = mean_t - mean_c
    if c.var() == 0.0 and t.var() == 0.0:  # no spread: scipy returns NaN
        p_value = 1.0 if difference == 0.0 else 0.0
        sign = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        return Comparison(
            "Welch t",
            mean_c,
            mean_t,
            Interval(difference, difference, difference),
            _relative(difference, mean_c),
            sign,
            p_value,
            int(c.size),
            int(t.size),
        )
    result = stats.ttest_ind(t, c, equal_var=False)
    ci = result.confidence_interval(confidence_level=confidence)
    return Comparison(
        "Welch t",
        mean_c,
        mean_t,
        Interval(difference, float(ci.low), float(ci.high)),
        _relative(difference, mean_c),
        float(result.statistic),
        float(result.pvalue),
        int(c.size),
        int(t.size),
    )


def _count_pairwise_at_most(
    t_sorted: NDArray[np.float64], c_sorted: NDArray[np.float64], x: float
) -> int:
    """How many pairs (t_i, c_j) have t_i - c_j <= x, without forming the n x m differences."""
    # t_i - c_j <= x  <=>  c_j >= t_i - x
    below = np.searchsorted(c_sorted, t_sorted - x, side="left")
    return int(c_sorted.size * t_sorted.size - below.sum())


def _kth_pairwise_difference(
    t_sorted: NDArray[np.float64], c_sorted: NDArray[np.float64], k: int
) -> float:
    """The k-th smallest (1-based) of the n x m differences t_i - c_j, by bisection on the value
    (O((n + m) log m) per step); exact to float resolution."""
    low = float(t_sorted[0] - c_sorted[-1])
    high = float(t_sorted[-1] - c_sorted[0])
    if _count_pairwise_at_most(t_sorted, c_sorted, low) >= k:
        return low
    for _ in range(200):  # invariant: count(low) < k <= count(high)
        middle = low + (high - low) / 2.0
        if middle <= low or middle >= high:
            break
        if _count_pairwise_at_most(t_sorted, c_sorted, middle) >= k:
            high = middle
        else:
            low = middle
    return high


def compare_mann_whitney(
    control: ArrayLike, treatment: ArrayLike, confidence: float = 0.95
) -> Comparison:
    """Continuous metric, skewed (latency, tokens): Mann-Whitney U from scipy (two-sided).

    Arm estimates are medians. The difference is the Hodges-Lehmann shift (the median of all
    treatment - control differences), the estimate that goes with the rank test, and its
    interval is Moses' distribution-free one: the k-th smallest and k-th largest pairwise
    differences with k = nm/2 - z sqrt(nm(n+m+1)/12) (normal approximation of U, no tie
    correction). Relative effect: the shift over the control median.
    """
    c = _finite(control, "control")
    t = _finite(treatment, "treatment")
    if c.size < 1 or t.size < 1:
        raise ValueError("Mann-Whitney needs at least one value per arm")
    z = z_for(confidence)
    result = stats.mannwhitneyu(t, c, alternative="two-sided")
    c_sorted, t_sorted = np.sort(c), np.sort(t)
    n, m = t.size, c.size
    pairs = n * m
    shift = 0.5 * (
        _kth_pairwise_difference(t_sorted, c_sorted, (pairs + 1) // 2)
        + _kth_pairwise_difference(t_sorted, c_sorted, pairs // 2 + 1)
    )
    k = math.floor(pairs / 2.0 - z * math.sqrt(pairs * (n + m + 1) / 12.0))
    if k < 1:
        low, high = float(t_sorted[0] - c_sorted[-1]), float(t_sorted[-1] - c_sorted[0])
    else:
        low = _kth_pairwise_difference(t_sorted, c_sorted, k)
        high = _kth_pairwise_difference(t_sorted, c_sorted, pairs - k + 1)
    median_c = float(np.median(c))
    return Comparison(
        "Mann-Whitney U",
        median_c,
        float(np.median(t)),
        Interval(shift, min(low, shift), max(high, shift)),
        _relative(shift, median_c),
        float(result.statistic),
        float(result.pvalue),
        int(m),
        int(n),
    )


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio of means sum(x)/sum(y) over units and its delta-method variance."""

    ratio: float
    variance: float
    units: int


def ratio_estimate(numerators: ArrayLike, denominators: ArrayLike) -> RatioEstimate:
    """The delta method for R = mean(x) / mean(y) over n independent units (x: a unit's summed
    cost, y: its request count).

    Var(R) ≈ (1/n) (s_xx / mu_y² - 2 mu_x s_xy / mu_y³ + mu_x² s_yy / mu_y⁴) with the sample
    variances s_xx, s_yy and covariance s_xy (ddof 1): requests of one user are correlated, so
    treating requests as independent would understate the variance; the unit of randomization
    is the independent one. Needs n >= 2 and a positive mean denominator.
    """
    x = _finite(numerators, "numerators")
    y = _finite(denominators, "denominators")
    if x.size != y.size:
        raise ValueError("numerators and denominators need one value per unit each")
    n = x.size
    if n < 2:
        raise ValueError("the delta method needs at least two units")
    mu_x, mu_y = float(x.mean()), float(y.mean())
    if mu_y <= 0.0:
        raise ValueError("the mean denominator must be positive")
    covariance = np.cov(x, y, ddof=1)
    s_xx, s_xy, s_yy = float(covariance[0, 0]), float(covariance[0, 1]), float(covariance[1, 1])
    variance = (s_xx / mu_y**2 - 2.0 * mu_x * s_xy / mu_y**3 + mu_x**2 * s_yy / mu_y**4) / n
    return RatioEstimate(mu_x / mu_y, max(0.0, variance), n)


def compare_ratio(
    numerators_control: ArrayLike,
    denominators_control: ArrayLike,
    numerators_treatment: ArrayLike,
    denominators_treatment: ArrayLike,
    confidence: float = 0.95,
) -> Comparison:
    """Ratio metric (cost per request): the delta-method variance per arm (`ratio_estimate`),
    the arms independent, a two-sided z test of the difference and its normal interval."""
    z = z_for(confidence)
    c = ratio_estimate(numerators_control, denominators_control)
    t = ratio_estimate(numerators_treatment, denominators_treatment)
    difference = t.ratio - c.ratio
    standard_error = math.sqrt(c.variance + t.variance)
    if standard_error == 0.0:
        statistic = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        p_value = 1.0 if difference == 0.0 else 0.0
    else:
        statistic = difference / standard_error
        p_value = float(min(1.0, 2.0 * stats.norm.sf(abs(statistic))))
    half = z * standard_error
    return Comparison(
        "delta method z",
        c.ratio,
        t.ratio,
        Interval(difference, difference - half, difference + half),
        _relative(difference, c.ratio),
        statistic,
        p_value,
        c.units,
        t.units,
    )


@dataclass(frozen=True)
class SampleRatioCheck:
    """Observed against expected assignment counts; `mismatch` when p < the threshold."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float
    mismatch: bool


def sample_ratio_mismatch(
    counts: Sequence[int], weights: Sequence[float], threshold: float = SRM_THRESHOLD
) -> SampleRatioCheck:
    """Chi-square goodness of fit (`scipy.stats.chisquare`) of the units per variant against the
    configured weights (normalized). p < 0.001 means the assignment itself is broken (a
    variant crashes before logging, a bot hits one arm...): no effect estimate can be trusted.
    Variants with weight 0 must have no units; no units at all is no evidence (p-value 1).
    """
    if len(counts) != len(weights) or len(counts) < 2:
        raise ValueError("need one weight per variant and at least two variants")
    if any(c < 0 for c in counts) or any(not w >= 0.0 for w in weights) or sum(weights) <= 0:
        raise ValueError("counts must be >= 0 and weights >= 0 with a positive sum")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    total = sum(counts)
    share = np.asarray(weights, dtype=np.float64) / float(sum(weights))
    expected = share * total
    observed = tuple(int(c) for c in counts)
    if total == 0:
        return SampleRatioCheck(observed, tuple(float(e) for e in expected), 0.0, 1.0, False)
    zero = share == 0.0
    if np.any(np.asarray(counts)[zero] > 0):  # traffic to a variant configured off
        return SampleRatioCheck(observed, tuple(float(e) for e in expected), math.inf, 0.0, True)
    live = ~zero
    result = stats.chisquare(np.asarray(counts, dtype=np.float64)[live], expected[live])
    p_value = float(result.pvalue) if np.isfinite(result.pvalue) else 1.0
    return SampleRatioCheck(
        observed,
        tuple(float(e) for e in expected),
        float(result.statistic),
        p_value,
        p_value < threshold,
    )


def correct(
    p_values: Sequence[float], method: Literal["holm", "bh"] = "holm", level: float = 0.05
) -> Adjusted:
    """Correction across a report's metrics: Holm (no false claim at all, with probability
    1 - level) or Benjamini-Hochberg (false discovery rate), from `multiple`."""
    if method == "holm":
        return holm(p_values, level)
    if method == "bh":
        return benjamini_hochberg(p_values, level)
    raise ValueError(f"unknown correction {method!r}")
