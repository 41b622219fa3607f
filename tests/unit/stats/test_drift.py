"""Drift statistics: fixed inputs against scipy and hand formulas, edge cases, seeded shifts."""

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from llmops.stats.drift import (
    THRESHOLDS,
    centroid_cosine_distance,
    chi_square_test,
    default_method,
    drifted,
    jensen_shannon,
    ks_test,
    mmd_test,
    psi,
    psi_categorical,
    rbf_bandwidth,
    wasserstein_normed,
    z_test_binary,
)


def _normal(seed: int, size: int, loc: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, 1.0, size)


# Numeric ---------------------------------------------------------------------------------------


def test_ks_is_scipys() -> None:
    ref, cur = _normal(1, 300), _normal(2, 200, 0.3)
    expected = stats.ks_2samp(ref, cur)
    got = ks_test(ref, cur)
    assert (got.statistic, got.p_value) == (expected.statistic, expected.pvalue)
    assert ks_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).statistic == 1.0


def test_wasserstein_normed_by_hand() -> None:
    # Shifting every value by 2 moves W1 by exactly 2; the reference's population std is 2.
    ref = [1.0, 3.0, 5.0, 7.0]
    assert np.std(ref) == pytest.approx(math.sqrt(5.0))
    assert wasserstein_normed(ref, [v + 2 for v in ref]) == pytest.approx(2 / math.sqrt(5.0))
    assert wasserstein_normed(ref, ref) == 0.0


def test_wasserstein_constant_reference_is_finite() -> None:
    # std 0: Evidently's floor 0.001 keeps the score finite (and huge for any shift).
    assert wasserstein_normed([5.0] * 10, [5.0] * 3) == 0.0
    assert wasserstein_normed([5.0] * 10, [5.1] * 3) == pytest.approx(0.1 / 0.001)


def test_psi_few_values_by_hand() -> None:
    # <= 20 distinct reference values: one bin per value. Shares 0.5/0.5 vs 0.25/0.75.
    got = psi([0, 0, 1, 1], [0, 1, 1, 1])
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.5 - 0.75) * math.log(0.5 / 0.75)
    assert got == pytest.approx(expected, rel=1e-12)


def test_psi_fills_empty_bins() -> None:
    # The current window has a value the reference never had: its reference share is 0.0001.
    got = psi([1, 1, 2, 2], [1, 3])
    ref = np.array([0.5, 0.5, 0.0001])
    cur = np.array([0.5, 0.0001, 0.5])
    assert got == pytest.approx(float(np.sum((ref - cur) * np.log(ref / cur))), rel=1e-12)


def test_psi_many_values_uses_sturges_bins_over_both() -> None:
    ref, cur = _normal(3, 500), _normal(4, 400, 0.5)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    r = np.histogram(ref, edges)[0] / ref.size
    c = np.histogram(cur, edges)[0] / cur.size
    r[r == 0], c[c == 0] = 0.0001, 0.0001
    assert psi(ref, cur) == pytest.approx(float(np.sum((r - c) * np.log(r / c))), rel=1e-12)


def test_no_drift_on_identical_samples() -> None:
    ref = _normal(5, 1000)
    assert psi(ref, ref) == 0.0
    assert ks_test(ref, ref).p_value == 1.0
    assert wasserstein_normed(ref, ref) == 0.0


def test_seeded_shift_is_detected_and_no_shift_is_not() -> None:
    ref = _normal(6, 2000)
    same, shifted = _normal(7, 2000), _normal(8, 2000, 0.5)
    assert psi(ref, same) < 0.1 <= psi(ref, shifted)
    assert wasserstein_normed(ref, same) < 0.1 <= wasserstein_normed(ref, shifted)
    assert ks_test(ref, shifted).p_value < 1e-20


def test_ks_false_alarms_stay_near_the_nominal_rate() -> None:
    # One unshifted pair alarms 5% of the time at p <= 0.05 (seeds 6 and 7 above happen to);
    # over 400 seeded unshifted windows the share must stay near 5%.
    ref = _normal(6, 1000)
    alarms = sum(ks_test(ref, _normal(100 + i, 300)).p_value <= 0.05 for i in range(400))
    assert 5 <= alarms <= 35


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf, 1.0]])
def test_numeric_rejects_empty_and_non_finite(bad: list[float]) -> None:
    for fn in (ks_test, wasserstein_normed, psi):
        with pytest.raises(ValueError):
            fn(bad, [1.0, 2.0])
        with pytest.raises(ValueError):
            fn([1.0, 2.0], bad)


# Categorical -----------------------------------------------------------------------------------


def test_jensen_shannon_is_scipys_natural_log() -> None:
    ref = {"en": 60, "de": 30, "ja": 10}
    cur = {"de": 20, "en": 50, "fr": 30}  # a new category, and one gone
    expected = distance.jensenshannon([60, 30, 10, 0], [50, 20, 0, 30])
    assert jensen_shannon(ref, cur) == pytest.approx(expected, rel=1e-12)
    disjoint = jensen_shannon({"a": 1}, {"b": 1})
    assert disjoint == pytest.approx(math.sqrt(math.log(2)))
    assert jensen_shannon({"a": 3, "b": 1}, {"a": 300, "b": 100}) == 0.0


def test_chi_square_is_scipys_with_expected_from_reference_shares() -> None:
    ref = {"en": 600, "de": 300, "ja": 100}
    cur = {"en": 50, "de": 40, "ja": 10}
    expected = stats.chisquare([50, 40, 10], [60, 30, 10])
    got = chi_square_test(ref, cur)
    assert (got.statistic, got.p_value) == pytest.approx((expected.statistic, expected.pvalue))


def test_chi_square_edges() -> None:
    assert chi_square_test({"a": 5}, {"a": 9}) == chi_square_test({"a": 1}, {"a": 1})
    assert (chi_square_test({"a": 5}, {"a": 9}).p_value) == 1.0
    new = chi_square_test({"a": 5, "b": 5}, {"a": 5, "c": 1})
    assert (new.statistic, new.p_value) == (math.inf, 0.0)
    gone = chi_square_test({"a": 5, "b": 5}, {"a": 10})  # a category vanished: finite
    assert math.isfinite(gone.statistic) and gone.p_value < 0.01
    same = chi_square_test({"x": 2, "y": 6}, {"x": 20, "y": 60})
    assert same.statistic == pytest.approx(0.0, abs=1e-12) and same.p_value == pytest.approx(1.0)


def test_psi_categorical_and_unicode_keys() -> None:
    ref = {"日本語": 10, "\x00\x1b": 10, "": 0}
    assert psi_categorical(ref, {"日本語": 1, "\x00\x1b": 1}) == 0.0
    assert psi_categorical(ref, {"日本語": 19, "\x00\x1b": 1}) > 0.1


def test_z_test_binary_is_the_two_proportion_test() -> None:
    got = z_test_binary({"yes": 30, "no": 70}, {"yes": 50, "no": 50})
    table = [[30, 70], [50, 50]]
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert got.statistic**2 == pytest.approx(chi2) and got.p_value == pytest.approx(p)
    assert z_test_binary({"yes": 4}, {"yes": 9}).p_value == 1.0
    with pytest.raises(ValueError):
        z_test_binary({"a": 1, "b": 1, "c": 1}, {"a": 1})
    with pytest.raises(ValueError):
        z_test_binary({"a": 1.5, "b": 1}, {"a": 1})


@pytest.mark.parametrize(
    ("ref", "cur"), [({}, {"a": 1}), ({"a": 1}, {}), ({"a": 0}, {"a": 1}), ({"a": -1}, {"a": 1})]
)
def test_categorical_rejects_empty_sides(ref: dict[str, int], cur: dict[str, int]) -> None:
    for fn in (jensen_shannon, chi_square_test, psi_categorical):
        with pytest.raises(ValueError):
            fn(ref, cur)


def test_seeded_categorical_shift() -> None:
    rng = np.random.default_rng(9)
    cats = ["a", "b", "c", "d"]
    ref = Counter(rng.choice(cats, 5000, p=[0.4, 0.3, 0.2, 0.1]).tolist())
    same = Counter(rng.choice(cats, 1000, p=[0.4, 0.3, 0.2, 0.1]).tolist())
    moved = Counter(rng.choice(cats, 1000, p=[0.1, 0.2, 0.3, 0.4]).tolist())
    assert chi_square_test(ref, same).p_value > 0.05 > chi_square_test(ref, moved).p_value
    assert jensen_shannon(ref, same) < 0.1 <= jensen_shannon(ref, moved)


# Embeddings ------------------------------------------------------------------------------------


def test_centroid_cosine_distance() -> None:
    assert centroid_cosine_distance([1.0, 0.0], [0.0, 2.0]) == pytest.approx(1.0)
    assert centroid_cosine_distance([[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0]) == pytest.approx(0.0)
    assert centroid_cosine_distance([1.0, 1.0], [-1.0, -1.0]) == pytest.approx(2.0)
    assert centroid_cosine_distance([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert centroid_cosine_distance([0.0, 0.0], [1.0, 0.0]) == 1.0
    with pytest.raises(ValueError):
        centroid_cosine_distance([1.0, 0.0], [1.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        centroid_cosine_distance(np.empty((0, 3)), [1.0, 0.0, 0.0])


def test_rbf_bandwidth_median_heuristic() -> None:
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [6.0, 8.0]])
    # Non-zero pair distances: 5, 10, 5, 5 (and 5 again from the duplicate): median 5.
    assert rbf_bandwidth(points) == 5.0
    assert rbf_bandwidth(np.ones((4, 3))) == 1.0


def test_mmd_statistic_by_hand() -> None:
    ref, cur = np.array([[0.0], [1.0]]), np.array([[3.0]])
    sigma = 2.0  # pair distances 1, 3, 2

    def k(a: float, b: float) -> float:
        return math.exp(-((a - b) ** 2) / (2 * sigma**2))

    expected = (k(0, 0) + k(1, 1) + 2 * k(0, 1)) / 4 + k(3, 3) - 2 * (k(0, 3) + k(1, 3)) / 2
    got = mmd_test(ref, cur, np.random.default_rng(0), permutations=50)
    assert got.statistic == pytest.approx(expected, rel=1e-12)


def test_mmd_permutation_p_value_is_deterministic_with_a_seed() -> None:
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=(80, 8)), rng.normal(size=(60, 8))
    first = mmd_test(ref, cur, np.random.default_rng(42))
    again = mmd_test(ref, cur, np.random.default_rng(42))
    assert first == again
    other = mmd_test(ref, cur, np.random.default_rng(43))
    assert other.statistic == first.statistic


def test_mmd_detects_a_seeded_shift_and_not_its_absence() -> None:
    rng = np.random.default_rng(12)
    ref = rng.normal(size=(100, 16))
    same = rng.normal(size=(100, 16))
    shifted = rng.normal(size=(100, 16)) + 0.5
    assert mmd_test(ref, same, np.random.default_rng(1)).p_value > 0.05
    moved = mmd_test(ref, shifted, np.random.default_rng(1), permutations=199)
    assert moved.p_value == 1 / 200  # no relabelling comes close: the smallest p possible


def test_mmd_identical_and_constant_samples() -> None:
    ref = np.random.default_rng(13).normal(size=(30, 4))
    same = mmd_test(ref, ref, np.random.default_rng(2))
    assert same.statistic == pytest.approx(0.0, abs=1e-12) and same.p_value == 1.0
    flat = mmd_test(np.ones((5, 3)), np.ones((4, 3)), np.random.default_rng(2))
    assert (flat.statistic, flat.p_value) == (0.0, 1.0)


def test_mmd_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        mmd_test(np.ones((3, 2)), np.ones((3, 3)), rng)
    with pytest.raises(ValueError):
        mmd_test(np.ones(3), np.ones((3, 3)), rng)
    with pytest.raises(ValueError):
        mmd_test(np.ones((3, 2)), np.full((3, 2), np.nan), rng)
    with pytest.raises(ValueError):
        mmd_test(np.ones((3, 2)), np.ones((3, 2)), rng, permutations=0)


# Evidently's defaults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "size", "n_unique", "method"),
    [
        ("numeric", 1000, 6, "ks"),
        ("numeric", 1001, 6, "wasserstein"),
        ("numeric", 1000, 5, "chisquare"),
        ("numeric", 1000, 2, "z"),
        ("numeric", 5000, 5, "jensenshannon"),
        ("categorical", 10, 3, "chisquare"),
        ("categorical", 10, 2, "z"),
        ("categorical", 1001, 2, "jensenshannon"),
        ("categorical", 1001, 50, "jensenshannon"),
    ],
)
def test_default_method_follows_evidently(kind: str, size: int, n_unique: int, method: str) -> None:
    choice = default_method(kind, size, n_unique)  # type: ignore[arg-type]
    assert choice.method == method
    assert choice.threshold == (0.05 if choice.p_value else 0.1)


def test_drifted_directions() -> None:
    assert drifted(THRESHOLDS["ks"], 0.05) and not drifted(THRESHOLDS["ks"], 0.06)
    assert drifted(THRESHOLDS["chisquare"], 0.049) and not drifted(THRESHOLDS["chisquare"], 0.05)
    assert drifted(THRESHOLDS["wasserstein"], 0.1) and not drifted(THRESHOLDS["psi"], 0.09)
    with pytest.raises(ValueError):
        default_method("text", 10, 3)  # type: ignore[arg-type]


# Agreement with Evidently ----------------------------------------------------------------------

# Computed by Evidently 0.7.23's legacy stattests (pandas 2.3.3, numpy 2.4.6, scipy 1.17.1) in a
# throwaway environment, on exactly the seeded data built below.
EVIDENTLY = {
    "ks": 0.0066875898735226464,
    "psi": 0.09868798420532546,
    "wasserstein": 0.16850007029282646,
    "psi_few": 1.015816640091525,
    "js": 0.18418525303737593,
    "chi": 1.0726494511305718e-29,
    "psi_cat": 0.4470177441764454,
    "z": 0.5260243673988017,
}


def test_values_agree_with_evidently() -> None:
    rng = np.random.default_rng(2026)
    ref, cur = rng.normal(0, 1, 1200), rng.normal(0.2, 1.2, 500)
    ints_ref, ints_cur = rng.integers(0, 8, 600), rng.integers(0, 9, 400)
    cats = np.array(["a", "b", "c", "d", "é"])
    cat_ref = Counter(rng.choice(cats, 1500, p=[0.3, 0.3, 0.2, 0.15, 0.05]).tolist())
    cat_cur = Counter(rng.choice(cats[:4], 700).tolist())
    bin_ref = Counter(rng.choice(["y", "n"], 300, p=[0.4, 0.6]).tolist())
    bin_cur = Counter(rng.choice(["y", "n"], 200).tolist())
    ours = {
        "ks": ks_test(ref, cur).p_value,
        "psi": psi(ref, cur),
        "wasserstein": wasserstein_normed(ref, cur),
        "psi_few": psi(ints_ref, ints_cur),
        "js": jensen_shannon(cat_ref, cat_cur),
        "chi": chi_square_test(cat_ref, cat_cur).p_value,
        "psi_cat": psi_categorical(cat_ref, cat_cur),
        "z": z_test_binary(bin_ref, bin_cur).p_value,
    }
    for name, value in EVIDENTLY.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-15), name
