"""Drift of a window against its reference: numeric, categorical and embedding columns. Pure.

The numeric and categorical statistics reproduce Evidently 0.7's legacy stattests (the code
its DataDriftPreset runs), so a value here equals Evidently's on the same rows:
- KS: `scipy.stats.ks_2samp` p-value; drift when p <= 0.05.
- Wasserstein (normed): W1(reference, current) / max(std(reference), 0.001), population std;
  the floor keeps a constant reference finite. Drift when >= 0.1.
- PSI: sum (r - c) ln(r / c) over bins. Evidently's binning (not reference quantiles, whatever
  its docstring says): with more than 20 distinct reference values, Sturges histogram edges over
  reference and current together; otherwise one bin per distinct value. An empty bin's share
  becomes 0.0001, or the smallest non-empty share / 1e6 when that is <= 0.0001. Drift >= 0.1.
- Jensen-Shannon distance over the categories' shares, natural log (scipy's default, as
  Evidently), so it lies in [0, sqrt(ln 2)]; no smoothing needed. Drift when >= 0.1.
- chi-square: the current counts against the reference shares scaled to the current size,
  categories aligned over both; drift when p < 0.05. A binary column uses the z test instead.
Embeddings (not Evidently's defaults, which train a classifier): the centroids' cosine
distance, and MMD with an RBF kernel and a seeded permutation p-value.

Categorical inputs are counts per category (a window keeps counts, not rows): a category
missing from one side counts 0 there. Samples must be non-empty and finite: an empty window is
not "no drift", so the caller decides what to do with it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from scipy.spatial import distance

from llmops.stats.proportions import two_proportion_z_test
from llmops.stats.results import TestResult

K = TypeVar("K", bound=Hashable)
FloatArray = NDArray[np.float64]

ColumnKind = Literal["numeric", "categorical"]
Method = Literal["ks", "wasserstein", "psi", "chisquare", "z", "jensenshannon"]


def _sample(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has NaN or infinite values")
    return array


def _aligned(reference: Mapping[K, float], current: Mapping[K, float]) -> tuple[FloatArray, ...]:
    """Counts of both sides over the union of categories (0 where one side lacks one)."""
    keys = list(dict.fromkeys([*reference, *current]))
    ref = np.array([reference.get(key, 0.0) for key in keys], dtype=np.float64)
    cur = np.array([current.get(key, 0.0) for key in keys], dtype=np.float64)
    for counts, name in ((ref, "reference"), (cur, "current")):
        if not np.all(np.isfinite(counts)) or np.any(counts < 0.0):
            raise ValueError(f"{name} counts must be finite and >= 0")
        if counts.sum() <= 0.0:
            raise ValueError(f"{name} has no observations")
    return ref, cur


# Numeric ---------------------------------------------------------------------------------------


def ks_test(reference: ArrayLike, current: ArrayLike) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`, two-sided, method auto)."""
    result = stats.ks_2samp(_sample(reference, "reference"), _sample(current, "current"))
    return TestResult(float(result.statistic), float(result.pvalue))


def wasserstein_normed(reference: ArrayLike, current: ArrayLike) -> float:
    """W1 distance in units of the reference's spread: W1 / max(std(reference), 0.001)."""
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    norm = max(float(np.std(ref)), 0.001)
    return float(stats.wasserstein_distance(ref, cur)) / norm


def _fill_empty(shares: FloatArray) -> FloatArray:
    # Evidently's "feel_zeroes": an empty bin gets a share far below every non-empty one.
    smallest = float(shares[shares > 0.0].min())
    filled = shares.copy()
    filled[filled == 0.0] = smallest / 1e6 if smallest <= 0.0001 else 0.0001
    return filled


def _psi_of_shares(reference: FloatArray, current: FloatArray) -> float:
    ref, cur = _fill_empty(reference), _fill_empty(current)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def psi(reference: ArrayLike, current: ArrayLike) -> float:
    """Population Stability Index of a numeric column, binned as Evidently bins it (above)."""
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    if np.unique(ref).size > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        ref_shares = np.histogram(ref, edges)[0] / ref.size
        cur_shares = np.histogram(cur, edges)[0] / cur.size
        return _psi_of_shares(ref_shares, cur_shares)
    values, counts = np.unique(ref, return_counts=True)
    cur_values, cur_counts = np.unique(cur, return_counts=True)
    return psi_categorical(
        dict(zip(values.tolist(), counts.tolist(), strict=True)),
        dict(zip(cur_values.tolist(), cur_counts.tolist(), strict=True)),
    )


# Categorical -----------------------------------------------------------------------------------


def psi_categorical(reference: Mapping[K, float], current: Mapping[K, float]) -> float:
    """PSI over category shares, empty categories filled as in `psi`."""
    ref, cur = _aligned(reference, current)
    return _psi_of_shares(ref / ref.sum(), cur / cur.sum())


def jensen_shannon(reference: Mapping[K, float], current: Mapping[K, float]) -> float:
    """Jensen-Shannon distance (the square root of the divergence) of the category shares,
    natural log: `scipy.spatial.distance.jensenshannon`. 0 for equal shares."""
    ref, cur = _aligned(reference, current)
    with np.errstate(invalid="ignore"):
        value = float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum()))
    # For (nearly) equal shares rounding can leave the divergence a hair below 0, and its root
    # NaN: that is a distance of 0.
    return 0.0 if math.isnan(value) else value


def chi_square_test(reference: Mapping[K, float], current: Mapping[K, float]) -> TestResult:
    """Pearson chi-square of the current counts against expected = reference share x current
    size (`scipy.stats.chisquare`, k - 1 degrees of freedom).

    A category the reference never saw but the current window has is certain drift: statistic
    inf, p-value 0 (scipy's own limit). One category on both sides leaves nothing to test:
    statistic 0, p-value 1.
    """
    ref, cur = _aligned(reference, current)
    if ref.size < 2:
        return TestResult(0.0, 1.0)
    if np.any((ref == 0.0) & (cur > 0.0)):
        return TestResult(math.inf, 0.0)
    expected = ref * (cur.sum() / ref.sum())
    result = stats.chisquare(cur, expected)
    return TestResult(float(result.statistic), float(result.pvalue))


def z_test_binary(reference: Mapping[K, float], current: Mapping[K, float]) -> TestResult:
    """Evidently's "z" method for a column with at most two categories: the pooled
    two-proportion z test on the share of one category (two-sided, so which one is moot)."""
    ref, cur = _aligned(reference, current)
    if ref.size > 2:
        raise ValueError("the z test needs at most two categories")
    if np.any(ref != np.round(ref)) or np.any(cur != np.round(cur)):
        raise ValueError("the z test needs whole counts")
    return two_proportion_z_test(int(ref[0]), int(ref.sum()), int(cur[0]), int(cur.sum()))


# Embeddings ------------------------------------------------------------------------------------


def _matrix(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (one embedding per row)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has NaN or infinite values")
    return array


def centroid_cosine_distance(reference: ArrayLike, current: ArrayLike) -> float:
    """1 - cos(reference centroid, current centroid); each side is a centroid (1-D) or the
    embeddings themselves (2-D, averaged by row). Windows keep centroids: they merge by a
    weighted mean. A zero centroid has no direction: two give 0, one gives 1 (no shared one)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref = _matrix(ref, "reference").mean(axis=0) if ref.ndim == 2 else _sample(ref, "reference")
    cur = _matrix(cur, "current").mean(axis=0) if cur.ndim == 2 else _sample(cur, "current")
    if ref.shape != cur.shape:
        raise ValueError(f"dimensions differ: {ref.shape[0]} and {cur.shape[0]}")
    ref_zero, cur_zero = not np.any(ref), not np.any(cur)
    if ref_zero or cur_zero:
        return 0.0 if ref_zero and cur_zero else 1.0
    return float(min(2.0, max(0.0, distance.cosine(ref, cur))))


def rbf_bandwidth(pooled: FloatArray) -> float:
    """Median heuristic: the median Euclidean distance between distinct points of the pooled
    sample (pairs at distance 0 left out); 1.0 when all points coincide."""
    pairwise = distance.pdist(pooled)
    pairwise = pairwise[pairwise > 0.0]
    return float(np.median(pairwise)) if pairwise.size else 1.0


def mmd_test(
    reference: ArrayLike,
    current: ArrayLike,
    rng: np.random.Generator,
    permutations: int = 200,
) -> TestResult:
    """Maximum mean discrepancy (Gretton et al. 2012) with a permutation p-value.

    Kernel k(x, y) = exp(-|x - y|² / (2 sigma²)), sigma by the median heuristic on the pooled
    sample. Statistic: the biased estimate MMD² = s' K s with s = 1/n on reference rows and
    -1/m on current rows (>= 0). Permutations relabel the pooled rows with `rng` (the caller
    seeds it, so the p-value is reproducible), all at once as one matrix product. p-value =
    (1 + #{permuted >= observed}) / (1 + permutations), never 0. Cost is O((n+m)²): pass
    reservoir samples, not whole windows.
    """
    if permutations < 1:
        raise ValueError("permutations must be >= 1")
    ref = _matrix(reference, "reference")
    cur = _matrix(current, "current")
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(f"dimensions differ: {ref.shape[1]} and {cur.shape[1]}")
    pooled = np.vstack([ref, cur])
    sigma = rbf_bandwidth(pooled)
    kernel = np.exp(-distance.squareform(distance.pdist(pooled, "sqeuclidean")) / (2 * sigma**2))
    n, m = ref.shape[0], cur.shape[0]
    signs = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    observed = max(0.0, float(signs @ kernel @ signs))
    shuffled = np.stack([signs[rng.permutation(n + m)] for _ in range(permutations)], axis=1)
    permuted = np.einsum("ib,ib->b", shuffled, kernel @ shuffled)
    # A relabelling equal to the observed one must count despite rounding in the sums.
    at_least = int(np.sum(permuted >= observed - 1e-12 * max(1.0, observed)))
    return TestResult(observed, (1 + at_least) / (1 + permutations))


# Evidently's default choice --------------------------------------------------------------------


@dataclass(frozen=True)
class MethodChoice:
    """A drift method and its threshold; `p_value` methods drift when the p-value is below
    the threshold (KS: at or below, as Evidently), distances when the score is at or above."""

    method: Method
    threshold: float
    p_value: bool


THRESHOLDS: dict[Method, MethodChoice] = {
    "ks": MethodChoice("ks", 0.05, True),
    "chisquare": MethodChoice("chisquare", 0.05, True),
    "z": MethodChoice("z", 0.05, True),
    "wasserstein": MethodChoice("wasserstein", 0.1, False),
    "jensenshannon": MethodChoice("jensenshannon", 0.1, False),
    "psi": MethodChoice("psi", 0.1, False),
}


def default_method(column_kind: ColumnKind, reference_size: int, n_unique: int) -> MethodChoice:
    """Evidently 0.7's default drift method for a column, with its default threshold.

    As documented (https://docs.evidentlyai.com/reference/data-drift-algorithm) and coded
    (legacy/calculations/stattests/registry.py, `_get_default_stattest`): `n_unique` counts the
    distinct values of reference and current together; a numeric column with <= 5 of them is
    treated as categorical. Reference <= 1000 rows: numeric -> KS, categorical -> chi-square,
    or the z test with <= 2 values. Larger: numeric -> Wasserstein (normed), categorical ->
    Jensen-Shannon. p-value tests at 0.05 (confidence 0.95), distances at 0.1.
    """
    if column_kind not in ("numeric", "categorical"):
        raise ValueError(f"unknown column kind {column_kind!r}")
    categorical = column_kind == "categorical" or n_unique <= 5
    if reference_size <= 1000:
        if not categorical:
            return THRESHOLDS["ks"]
        return THRESHOLDS["z"] if n_unique <= 2 else THRESHOLDS["chisquare"]
    return THRESHOLDS["jensenshannon"] if categorical else THRESHOLDS["wasserstein"]


def drifted(choice: MethodChoice, score: float) -> bool:
    """Whether a score crosses the method's threshold, in the method's direction."""
    if choice.p_value:
        return score <= choice.threshold if choice.method == "ks" else score < choice.threshold
    return score >= choice.threshold
