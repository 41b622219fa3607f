"""Rates: the Wilson score interval and the pooled two-proportion z test. Pure.

Both are defined on every input a window can produce, so a caller never sees NaN: an empty
sample is total ignorance (interval [0, 1], p-value 1), and a sample of all failures or all
successes has a finite, one-sided interval.
"""

from __future__ import annotations

import math
from typing import Literal

from scipy import stats

from llmops.stats.results import Interval, TestResult

Alternative = Literal["two-sided", "greater", "less"]


def z_for(confidence: float) -> float:
    """The two-sided normal quantile for a confidence level, e.g. 1.959964 for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def _check_counts(successes: int, trials: int) -> None:
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval for the rate `successes / trials` (Wilson 1927).

    center = (p + z²/2n) / (1 + z²/n),  half = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²).
    Unlike the Wald interval it stays inside [0, 1] and is not zero-width at 0 or n. Written
    out rather than taken from `scipy.stats.binomtest(...).proportion_ci`, which also computes
    an unused exact p-value; the tests check the two agree. `trials == 0` gives [0, 1] around 0.
    """
    _check_counts(successes, trials)
    z = z_for(confidence)
    if trials == 0:
        return Interval(0.0, 0.0, 1.0)
    n = float(trials)
    p = successes / n
    denominator = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # At 0 and n the bound is exactly 0 or 1; say so rather than leave rounding noise.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == trials else min(1.0, center + half)
    return Interval(p, low, high)


def two_proportion_z_test(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    alternative: Alternative = "two-sided",
) -> TestResult:
    """Pooled two-proportion z test of rate a against rate b.

    z = (p_a - p_b) / sqrt(P(1-P)(1/n_a + 1/n_b)) with the pooled P = (k_a + k_b)/(n_a + n_b);
    the p-value is from the standard normal ("greater": H1 p_a > p_b). This is the test
    Evidently's "z" drift method runs. With an empty sample, or a pooled rate of exactly 0 or 1
    (both samples all failures or all successes: the rates are equal), there is no evidence of a
    difference: statistic 0, p-value 1.
    """
    _check_counts(successes_a, trials_a)
    _check_counts(successes_b, trials_b)
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"unknown alternative {alternative!r}")
    if trials_a == 0 or trials_b == 0:
        return TestResult(0.0, 1.0)
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1.0 - pooled) * (1.0 / trials_a + 1.0 / trials_b)
    if variance <= 0.0:
        return TestResult(0.0, 1.0)
    z = (successes_a / trials_a - successes_b / trials_b) / math.sqrt(variance)
    if alternative == "greater":
        p_value = float(stats.norm.sf(z))
    elif alternative == "less":
        p_value = float(stats.norm.cdf(z))
    else:
        p_value = float(min(1.0, 2.0 * stats.norm.sf(abs(z))))
    return TestResult(z, p_value)
