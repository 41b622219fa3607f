"""Benjamini-Hochberg and Holm on fixed p-values, checked against the step rules by hand."""

import math

import pytest

from llmops.stats.multiple import benjamini_hochberg, holm

P = [0.01, 0.04, 0.03, 0.005, 0.5]


def test_bh_by_hand() -> None:
    # Sorted: 0.005, 0.01, 0.03, 0.04, 0.5 (m = 5); m p / rank: 0.025, 0.025, 0.05, 0.05, 0.5,
    # then the running minimum from the top leaves them as they are.
    got = benjamini_hochberg(P, q=0.05)
    assert got.p_values == pytest.approx((0.025, 0.05, 0.05, 0.025, 0.5))
    assert got.rejected == (True, True, True, True, False)
    assert benjamini_hochberg(P, q=0.04).rejected == (True, False, False, True, False)


def test_bh_step_up_lets_a_larger_p_carry_smaller_ones() -> None:
    # Alone 0.02 * 3 / 1 = 0.06 > 0.05, but the largest p (0.045 * 3/3) passes, so all do.
    got = benjamini_hochberg([0.02, 0.04, 0.045])
    assert got.p_values == pytest.approx((0.045, 0.045, 0.045))
    assert all(got.rejected)


def test_holm_by_hand() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04, 0.5 times 5, 4, 3, 2, 1: 0.025, 0.04, 0.09, 0.08, 0.5;
    # the running maximum makes 0.08 -> 0.09.
    got = holm(P, alpha=0.05)
    assert got.p_values == pytest.approx((0.04, 0.09, 0.09, 0.025, 0.5))
    assert got.rejected == (True, False, False, True, False)


def test_holm_is_never_less_strict_than_bh() -> None:
    ps = [0.001, 0.008, 0.012, 0.02, 0.03, 0.2, 0.7, 0.9]
    for h, b in zip(holm(ps).p_values, benjamini_hochberg(ps).p_values, strict=True):
        assert h >= b


def test_adjusted_values_are_capped_at_one_and_ties_kept() -> None:
    got = holm([0.6, 0.6, 0.6])
    assert got.p_values == (1.0, 1.0, 1.0) and got.rejected == (False, False, False)
    assert benjamini_hochberg([0.6, 0.6]).p_values == pytest.approx((0.6, 0.6))


def test_empty_and_single() -> None:
    assert benjamini_hochberg([]).p_values == () and holm([]).rejected == ()
    assert benjamini_hochberg([0.05]).rejected == (True,)
    assert holm([0.0]).p_values == (0.0,)


def test_many_null_p_values_reject_nothing() -> None:
    ps = [(i + 0.5) / 10_000 for i in range(10_000)]  # uniform: nothing but noise
    assert not any(benjamini_hochberg(ps).rejected)
    assert not any(holm(ps).rejected)


@pytest.mark.parametrize("bad", [[math.nan], [1.5], [-0.1], [math.inf]])
def test_rejects_non_p_values(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        benjamini_hochberg(bad)
    with pytest.raises(ValueError):
        holm(bad)


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5])
def test_rejects_bad_levels(level: float) -> None:
    with pytest.raises(ValueError):
        benjamini_hochberg([0.1], q=level)
    with pytest.raises(ValueError):
        holm([0.1], alpha=level)
