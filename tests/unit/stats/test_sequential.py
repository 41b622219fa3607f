"""The mSPRT: its formula, its confidence sequence, and seeded simulations of experiments
watched after every batch (peeking-safe where a fixed-horizon test watched the same way is not).
"""

import math

import numpy as np
import pytest
from scipy import stats

from llmops.stats.sequential import (
    SequentialState,
    always_valid_p_values,
    confidence_sequence_half_width,
    log_mixture_likelihood_ratio,
    means_difference,
    msprt_proportions,
    msprt_update,
    proportions_difference,
)

EXPERIMENTS, LOOKS, BATCH = 200, 20, 250  # 5,000 per arm at the last look
TAU = 0.05  # the smallest rate difference worth detecting, on the rate's scale


def test_lambda_matches_the_papers_per_pair_form() -> None:
    # Lambda_n = sqrt(V/(V+n tau²)) exp(n² tau² d² / (2V(V+n tau²))) with s² = V/n.
    v, n, tau, d = 0.2, 400, 0.03, 0.025
    expected = 0.5 * math.log(v / (v + n * tau**2)) + n**2 * tau**2 * d**2 / (
        2 * v * (v + n * tau**2)
    )
    assert float(log_mixture_likelihood_ratio(d, v / n, tau)) == pytest.approx(expected)
    # Lambda is the normal likelihood of d averaged over theta ~ N(0, tau²), over that at 0:
    # N(d; 0, s² + tau²) / N(d; 0, s²).
    s2 = v / n
    ratio = stats.norm.pdf(d, 0, math.sqrt(s2 + tau**2)) / stats.norm.pdf(d, 0, math.sqrt(s2))
    assert float(log_mixture_likelihood_ratio(d, s2, tau)) == pytest.approx(math.log(ratio))
    assert float(log_mixture_likelihood_ratio(d, 0.0, tau)) == 0.0  # no data, no evidence


def test_confidence_sequence_is_where_lambda_stays_below_one_over_alpha() -> None:
    s2, tau, alpha, d = 1e-4, 0.02, 0.05, 0.01
    half = float(confidence_sequence_half_width(s2, tau, alpha))
    edge = float(log_mixture_likelihood_ratio(d, s2, tau, null=d + half))
    assert edge == pytest.approx(math.log(1 / alpha))
    inside = float(log_mixture_likelihood_ratio(d, s2, tau, null=d + 0.99 * half))
    assert inside < math.log(1 / alpha)
    # Wider than the fixed-horizon interval: the price of looking at any time.
    assert half > 1.96 * math.sqrt(s2)
    assert math.isinf(float(confidence_sequence_half_width(0.0, tau, alpha)))


def test_state_p_value_never_rises_and_interval_only_shrinks() -> None:
    state = SequentialState()
    for d in (0.05, 0.0, 0.04, -0.01):
        new = msprt_update(state, d, 1e-4, 0.03)
        assert new.p_value <= state.p_value
        assert new.low >= state.low and new.high <= state.high
        state = new
    assert state.looks == 4
    with pytest.raises(ValueError):
        msprt_update(state, 0.0, 1e-4, 0.0)


def test_differences_from_counts_and_means() -> None:
    d, v = proportions_difference(100, 1000, 150, 1000)
    assert d == pytest.approx(0.05)
    assert v == pytest.approx(0.15 * 0.85 / 1000 + 0.1 * 0.9 / 1000)
    assert proportions_difference(0, 0, 1, 2) == (0.0, 0.0)
    assert means_difference(1.0, 4.0, 100, 1.5, 9.0, 50) == (0.5, pytest.approx(0.22))


def _watched(
    rate_control: float, rate_treatment: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per experiment and look: the always-valid p-value and the fixed-horizon z p-value."""
    rng = np.random.default_rng(seed)
    n = BATCH * np.arange(1, LOOKS + 1, dtype=np.float64)
    k_c = np.cumsum(rng.binomial(BATCH, rate_control, (EXPERIMENTS, LOOKS)), axis=1)
    k_t = np.cumsum(rng.binomial(BATCH, rate_treatment, (EXPERIMENTS, LOOKS)), axis=1)
    p_c, p_t = k_c / n, k_t / n
    d = p_t - p_c
    variance = (p_t * (1 - p_t) + p_c * (1 - p_c)) / n
    msprt = always_valid_p_values(d, variance, TAU)
    pooled = (k_c + k_t) / (2 * n)
    z = d / np.sqrt(pooled * (1 - pooled) * 2 / n)
    fixed = 2 * stats.norm.sf(np.abs(z))
    return msprt, fixed


def test_aa_watched_every_batch_msprt_holds_alpha_fixed_horizon_does_not() -> None:
    msprt, fixed = _watched(0.10, 0.10, seed=2017)
    msprt_rate = float(np.mean(np.any(msprt < 0.05, axis=1)))
    fixed_rate = float(np.mean(np.any(fixed < 0.05, axis=1)))
    assert msprt_rate <= 0.08
    assert fixed_rate > 0.10
    # Each single look of the fixed test is fine: its last look alone is near 5%.
    assert float(np.mean(fixed[:, -1] < 0.05)) <= 0.09


def test_planted_five_point_refusal_rise_at_5000_per_arm_is_found_by_both() -> None:
    msprt, fixed = _watched(0.10, 0.15, seed=42)
    assert float(np.mean(msprt[:, -1] < 0.05)) >= 0.99
    assert float(np.mean(fixed[:, -1] < 0.05)) >= 0.99
    # One experiment through the stateful API: found, with the interval excluding 0.
    rng = np.random.default_rng(1)
    state = SequentialState()
    k_c = k_t = 0
    for look in range(1, LOOKS + 1):
        k_c += int(rng.binomial(BATCH, 0.10))
        k_t += int(rng.binomial(BATCH, 0.15))
        state = msprt_proportions(state, k_c, BATCH * look, k_t, BATCH * look, TAU)
    assert state.significant() and 0.0 < state.low < 0.05 < state.high < 0.1
