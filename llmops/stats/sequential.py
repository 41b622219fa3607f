"""Always-valid inference for experiments watched at every window: the mSPRT. Pure.

Johari, Pekelis, Koomen, Walsh (2017), "Peeking at A/B tests: why it matters, and what to do
about it" ("Always valid inference"). With a normal mixing prior N(0, tau²) over the true
difference theta, the mixture likelihood ratio of the observed difference d against theta_0,
for a two-sample difference of means with n units per arm and V the variance of one
treatment - control pair, is

    Lambda_n = sqrt(V / (V + n tau²)) exp(n² tau² (d - theta_0)² / (2 V (V + n tau²))).

Written with s² = V / n, the variance of the difference estimator, it reads

    Lambda = sqrt(s² / (s² + tau²)) exp(tau² (d - theta_0)² / (2 s² (s² + tau²))),

which is the form used here because it also holds with unequal arms
(s² = var_t / n_t + var_c / n_c). Under H0 Lambda is a nonnegative martingale with mean 1, so
by Ville's inequality P(sup_n Lambda_n >= 1/alpha) <= alpha: the always-valid p-value
p_n = min(p_{n-1}, 1 / Lambda_n) (p_0 = 1) can be read after every window without inflating
false positives, and inverting the test gives the confidence sequence

    theta in d ± sqrt(s² (s² + tau²) / tau² * (2 log(1/alpha) + log((s² + tau²) / s²))),

intersected over looks (the running max of lows and min of highs).

The choice of tau: the mixture is most powerful for effects near tau in size (its scale), so
tau should be the smallest effect worth detecting, on the metric's own scale: for a rate, an
absolute difference such as 0.02-0.05; for a mean, a fraction of its standard deviation.
A tau much too large wastes power on small effects (the log((s² + tau²)/s²) penalty grows),
much too small needs many samples before anything is decided. The type I guarantee holds for
every tau fixed before the data; it must not be tuned on the experiment's own data.
The variance is a plug-in estimate (the paper's practice), so the guarantee is asymptotic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from llmops.stats.proportions import _check_counts


def _check(tau: float, alpha: float) -> None:
    if not tau > 0.0 or not math.isfinite(tau):
        raise ValueError(f"tau must be a positive number, got {tau}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def log_mixture_likelihood_ratio(
    difference: ArrayLike, variance: ArrayLike, tau: float, null: float = 0.0
) -> NDArray[np.float64]:
    """log Lambda for each (difference, variance of the difference estimator) pair, broadcast.

    A variance of 0 (no data, or no spread yet) carries no evidence: log Lambda = 0.
    """
    d = np.asarray(difference, dtype=np.float64)
    s2 = np.asarray(variance, dtype=np.float64)
    if np.any(s2 < 0.0) or not np.all(np.isfinite(s2)):
        raise ValueError("variances must be finite and >= 0")
    tau2 = tau * tau
    positive = s2 > 0.0
    safe = np.where(positive, s2, 1.0)
    value = 0.5 * np.log(safe / (safe + tau2)) + tau2 * (d - null) ** 2 / (
        2.0 * safe * (safe + tau2)
    )
    return np.where(positive, value, 0.0)


def always_valid_p_values(
    differences: ArrayLike, variances: ArrayLike, tau: float
) -> NDArray[np.float64]:
    """The always-valid p-values p_n = min(p_{n-1}, 1/Lambda_n) along the last axis (the looks;
    any leading axes are independent experiments), from the cumulative difference and its
    variance at each look."""
    _check(tau, 0.05)
    log_lambda = log_mixture_likelihood_ratio(differences, variances, tau)
    p = np.minimum(1.0, np.exp(-log_lambda))
    return np.minimum.accumulate(p, axis=-1)


def confidence_sequence_half_width(
    variance: ArrayLike, tau: float, alpha: float = 0.05
) -> NDArray[np.float64]:
    """Half-width of the (1 - alpha) confidence sequence at one look: {theta: Lambda < 1/alpha}.
    Infinite when the variance is 0 (nothing known yet)."""
    _check(tau, alpha)
    s2 = np.asarray(variance, dtype=np.float64)
    tau2 = tau * tau
    positive = s2 > 0.0
    safe = np.where(positive, s2, 1.0)
    width = np.sqrt(
        safe * (safe + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + np.log((safe + tau2) / safe))
    )
    return np.where(positive, width, np.inf)


@dataclass(frozen=True)
class SequentialState:
    """What an always-valid test carries from one look to the next.

    `p_value` is the always-valid p-value so far; [low, high] the confidence sequence
    (intersection of every look's interval); `difference` the latest estimate.
    """

    looks: int = 0
    difference: float = 0.0
    p_value: float = 1.0
    low: float = -math.inf
    high: float = math.inf

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def msprt_update(
    state: SequentialState, difference: float, variance: float, tau: float, alpha: float = 0.05
) -> SequentialState:
    """One look: the cumulative difference (treatment - control) and the variance of that
    difference estimator, all data so far. Returns the new state."""
    _check(tau, alpha)
    log_lambda = float(log_mixture_likelihood_ratio(difference, variance, tau))
    p_value = min(state.p_value, 1.0, math.exp(-log_lambda))
    half = float(confidence_sequence_half_width(variance, tau, alpha))
    low = max(state.low, difference - half)
    high = min(state.high, difference + half)
    if low > high:  # the plug-in variance moved; keep a (degenerate) interval at the estimate
        low = high = difference
    return SequentialState(state.looks + 1, difference, p_value, low, high)


def proportions_difference(
    successes_control: int, trials_control: int, successes_treatment: int, trials_treatment: int
) -> tuple[float, float]:
    """p_t - p_c and its plug-in variance p_t(1-p_t)/n_t + p_c(1-p_c)/n_c (0 with an empty arm)."""
    _check_counts(successes_control, trials_control)
    _check_counts(successes_treatment, trials_treatment)
    if trials_control == 0 or trials_treatment == 0:
        return 0.0, 0.0
    p_c = successes_control / trials_control
    p_t = successes_treatment / trials_treatment
    variance = p_t * (1.0 - p_t) / trials_treatment + p_c * (1.0 - p_c) / trials_control
    return p_t - p_c, variance


def means_difference(
    mean_control: float,
    variance_control: float,
    n_control: int,
    mean_treatment: float,
    variance_treatment: float,
    n_treatment: int,
) -> tuple[float, float]:
    """mean_t - mean_c and its variance var_t/n_t + var_c/n_c from running sums per arm."""
    if n_control < 0 or n_treatment < 0 or variance_control < 0 or variance_treatment < 0:
        raise ValueError("counts and variances must be >= 0")
    if n_control == 0 or n_treatment == 0:
        return 0.0, 0.0
    return (
        mean_treatment - mean_control,
        variance_treatment / n_treatment + variance_control / n_control,
    )


def msprt_proportions(
    state: SequentialState,
    successes_control: int,
    trials_control: int,
    successes_treatment: int,
    trials_treatment: int,
    tau: float,
    alpha: float = 0.05,
) -> SequentialState:
    """One look at two rates (cumulative counts so far)."""
    d, variance = proportions_difference(
        successes_control, trials_control, successes_treatment, trials_treatment
    )
    return msprt_update(state, d, variance, tau, alpha)
