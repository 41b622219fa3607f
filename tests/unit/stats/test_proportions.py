"""Wilson intervals and the two-proportion z test, against scipy's own computations."""

import math

import pytest
from scipy import stats

from llmops.stats.proportions import two_proportion_z_test, wilson_interval, z_for


@pytest.mark.parametrize(
    ("k", "n", "confidence"),
    [(1, 10, 0.95), (37, 120, 0.95), (5, 7, 0.9), (999, 1000, 0.99), (500_000, 10**6, 0.95)],
)
def test_wilson_agrees_with_scipy(k: int, n: int, confidence: float) -> None:
    expected = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
    got = wilson_interval(k, n, confidence)
    assert got.estimate == k / n
    assert got.low == pytest.approx(expected.low, abs=1e-12)
    assert got.high == pytest.approx(expected.high, abs=1e-12)


def test_wilson_by_hand() -> None:
    # 2 of 20 at 95%: z = 1.959964, center (0.1 + z²/40) / (1 + z²/20), half from the formula.
    z = 1.959963984540054
    center = (0.1 + z * z / 40) / (1 + z * z / 20)
    half = z / (1 + z * z / 20) * math.sqrt(0.1 * 0.9 / 20 + z * z / 1600)
    got = wilson_interval(2, 20)
    assert (got.low, got.high) == pytest.approx((center - half, center + half), abs=1e-15)
    assert (round(got.low, 4), round(got.high, 4)) == (0.0279, 0.3010)


def test_wilson_edges_are_finite_and_one_sided() -> None:
    assert wilson_interval(0, 0) == wilson_interval(0, 0, 0.5)
    empty = wilson_interval(0, 0)
    assert (empty.estimate, empty.low, empty.high) == (0.0, 0.0, 1.0)
    none = wilson_interval(0, 50)
    assert none.low == 0.0 and 0.0 < none.high < 0.1
    assert none.high == pytest.approx(
        stats.binomtest(0, 50).proportion_ci(method="wilson").high, abs=1e-12
    )
    every = wilson_interval(50, 50)
    assert every.high == 1.0 and 0.9 < every.low < 1.0
    huge = wilson_interval(10**12, 10**15)
    assert huge.low < 1e-3 < huge.high and huge.high - huge.low < 1e-6


@pytest.mark.parametrize(
    ("k", "n", "confidence"), [(-1, 5, 0.95), (6, 5, 0.95), (0, -1, 0.95), (1, 5, 1.0)]
)
def test_wilson_rejects_impossible_input(k: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(k, n, confidence)


def test_z_for_levels() -> None:
    assert z_for(0.95) == pytest.approx(1.959963984540054, abs=1e-12)
    with pytest.raises(ValueError):
        z_for(0.0)
    with pytest.raises(ValueError):
        z_for(math.nan)


@pytest.mark.parametrize(
    ("a", "na", "b", "nb"), [(30, 200, 18, 210), (5, 40, 5, 40), (1, 3, 9, 11)]
)
def test_z_test_squares_to_the_uncorrected_chi_square(a: int, na: int, b: int, nb: int) -> None:
    # The pooled z test is the 2x2 chi-square without continuity correction: z² = X², same p.
    table = [[a, na - a], [b, nb - b]]
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    got = two_proportion_z_test(a, na, b, nb)
    assert got.statistic**2 == pytest.approx(chi2, rel=1e-10, abs=1e-12)
    assert got.p_value == pytest.approx(p, rel=1e-10)
    assert math.copysign(1, got.statistic) == math.copysign(1, a / na - b / nb) or a * nb == b * na


def test_z_test_one_sided() -> None:
    # 30/200 against 18/210 by hand: pooled 48/410.
    pooled = 48 / 410
    z = (30 / 200 - 18 / 210) / math.sqrt(pooled * (1 - pooled) * (1 / 200 + 1 / 210))
    greater = two_proportion_z_test(30, 200, 18, 210, "greater")
    assert greater.statistic == pytest.approx(z, rel=1e-12)
    assert greater.p_value == pytest.approx(stats.norm.sf(z), rel=1e-10)
    less = two_proportion_z_test(30, 200, 18, 210, "less")
    assert less.p_value == pytest.approx(1 - greater.p_value, rel=1e-10)
    assert two_proportion_z_test(30, 200, 18, 210).p_value == pytest.approx(2 * greater.p_value)


def test_z_test_detects_a_jump_and_not_its_absence() -> None:
    assert two_proportion_z_test(150, 1000, 100, 1000, "greater").p_value < 0.001
    assert two_proportion_z_test(100, 1000, 150, 1000, "greater").p_value > 0.99


@pytest.mark.parametrize(
    ("a", "na", "b", "nb"),
    [(0, 0, 3, 10), (3, 10, 0, 0), (0, 0, 0, 0), (0, 10, 0, 20), (7, 7, 9, 9)],
)
def test_z_test_without_evidence_is_no_difference(a: int, na: int, b: int, nb: int) -> None:
    for alternative in ("two-sided", "greater", "less"):
        got = two_proportion_z_test(a, na, b, nb, alternative)
        assert (got.statistic, got.p_value) == (0.0, 1.0)


def test_z_test_all_versus_none_is_certain() -> None:
    got = two_proportion_z_test(100, 100, 0, 100)
    assert got.statistic == pytest.approx(math.sqrt(200)) and got.p_value < 1e-40
    assert got.p_value >= 0.0


def test_z_test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        two_proportion_z_test(3, 2, 1, 2)
    with pytest.raises(ValueError):
        two_proportion_z_test(1, 2, 1, 2, "bigger")  # type: ignore[arg-type]
