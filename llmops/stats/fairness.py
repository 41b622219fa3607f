"""Disparity between groups of a segment attribute, without labels. Pure.

A group's figure (refusal rate, safety-flag rate, error rate, mean latency) is compared to the
reference group's (the best one) as a ratio with a confidence interval; the four-fifths rule's
band 0.8-1.25 is the usual line. An alert needs the whole interval outside the band and enough
data on both sides, so a small group's noise never reads as unfairness.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from llmops.stats.proportions import z_for


@dataclass(frozen=True)
class Disparity:
    """ratio = group / reference with its interval [low, high], and the sizes behind it."""

    ratio: float
    low: float
    high: float
    n_group: int
    n_reference: int


def _uninformative(n_group: int, n_reference: int) -> Disparity:
    # Nothing to compare: the ratio could be anything, so no band can be crossed.
    return Disparity(1.0, 0.0, math.inf, n_group, n_reference)


def rate_ratio(
    successes_group: int,
    trials_group: int,
    successes_reference: int,
    trials_reference: int,
    confidence: float = 0.95,
) -> Disparity:
    """Rate ratio (p_group / p_reference) with the Katz log interval.

    ln(RR) +- z * sqrt(1/a - 1/n_g + 1/c - 1/n_r) (the delta method on the log ratio; Katz et
    al. 1978). When any cell is empty (a or c is 0, or a rate is exactly 1) the log ratio or its
    variance is undefined or degenerate, so 0.5 is added to every cell (Haldane-Anscombe:
    a + 0.5 of n + 1) and the ratio reported is the corrected one. An empty group gives the
    uninformative ratio 1 in [0, inf].
    """
    for k, n in ((successes_group, trials_group), (successes_reference, trials_reference)):
        if n < 0 or not 0 <= k <= n:
            raise ValueError(f"need 0 <= successes <= trials, got {k} of {n}")
    z = z_for(confidence)
    if trials_group == 0 or trials_reference == 0:
        return _uninformative(trials_group, trials_reference)
    a, n_g = float(successes_group), float(trials_group)
    c, n_r = float(successes_reference), float(trials_reference)
    if min(a, c, n_g - a, n_r - c) == 0.0:
        a, n_g, c, n_r = a + 0.5, n_g + 1.0, c + 0.5, n_r + 1.0
    log_ratio = math.log((a / n_g) / (c / n_r))
    se = math.sqrt(1.0 / a - 1.0 / n_g + 1.0 / c - 1.0 / n_r)
    return _from_log(log_ratio, z * se, trials_group, trials_reference)


def mean_ratio(
    mean_group: float,
    variance_group: float,
    n_group: int,
    mean_reference: float,
    variance_reference: float,
    n_reference: int,
    confidence: float = 0.95,
) -> Disparity:
    """Ratio of two positive means (e.g. latency) with a delta-method interval on the log scale.

    Var(ln x̄) ~ s² / (n x̄²), so ln(x̄_g / x̄_r) +- z * sqrt(s_g²/(n_g x̄_g²) + s_r²/(n_r x̄_r²)).
    Needs n >= 2 and a positive mean on both sides; otherwise the ratio is uninformative.
    """
    z = z_for(confidence)
    if min(variance_group, variance_reference) < 0.0:
        raise ValueError("variances must be >= 0")
    values = (mean_group, variance_group, mean_reference, variance_reference)
    if not all(math.isfinite(v) for v in values):
        raise ValueError("means and variances must be finite")
    if n_group < 2 or n_reference < 2 or mean_group <= 0.0 or mean_reference <= 0.0:
        return _uninformative(max(n_group, 0), max(n_reference, 0))
    log_ratio = math.log(mean_group / mean_reference)
    se = math.sqrt(
        variance_group / (n_group * mean_group**2)
        + variance_reference / (n_reference * mean_reference**2)
    )
    return _from_log(log_ratio, z * se, n_group, n_reference)


def _from_log(log_ratio: float, half_width: float, n_group: int, n_reference: int) -> Disparity:
    """A ratio and its interval, from the log ratio and the interval's half width there."""
    return Disparity(
        math.exp(log_ratio),
        math.exp(log_ratio - half_width),
        math.exp(log_ratio + half_width),
        n_group,
        n_reference,
    )


def best_group(
    rates: Mapping[str, tuple[int, int]], lower_is_better: bool = True, min_n: int = 1
) -> str | None:
    """The reference group: the best observed rate among groups with at least `min_n` trials.

    `rates` maps a group to (successes, trials). Ties go to the larger group, then the name, so
    the choice is stable from window to window. None when no group has enough data.
    """
    eligible = [(name, k, n) for name, (k, n) in rates.items() if n >= max(min_n, 1)]
    if not eligible:
        return None
    sign = 1.0 if lower_is_better else -1.0
    return min(eligible, key=lambda row: (sign * row[1] / row[2], -row[2], row[0]))[0]


def outside_band(
    disparity: Disparity, low: float = 0.8, high: float = 1.25, min_n: int = 100
) -> bool:
    """True when both sides have >= min_n observations and the whole interval is outside
    [low, high]: the disparity is real at the interval's confidence, not a small group's noise."""
    if not 0.0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got [{low}, {high}]")
    if min(disparity.n_group, disparity.n_reference) < min_n:
        return False
    return disparity.high < low or disparity.low > high
