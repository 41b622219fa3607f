"""Multiple testing: many features x segments are tested every window. Pure.

Benjamini-Hochberg bounds the expected share of false alarms among the alarms (drift: many
tests, a few false alarms tolerable); Holm bounds the chance of any false alarm at all
(experiments: a handful of metrics, each claim must hold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats


@dataclass(frozen=True)
class Adjusted:
    """Adjusted p-values in the input's order, and which tests are rejected at the level."""

    p_values: tuple[float, ...]
    rejected: tuple[bool, ...]


def _p_array(p_values: Sequence[float]) -> NDArray[np.float64]:
    array = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if not np.all((array >= 0.0) & (array <= 1.0)):  # also rejects NaN
        raise ValueError("p-values must be numbers in [0, 1]")
    return array


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def benjamini_hochberg(p_values: Sequence[float], q: float = 0.05) -> Adjusted:
    """Benjamini-Hochberg (1995) step-up: adjusted p_(i) = min over j >= i of m p_(j) / j.

    `scipy.stats.false_discovery_control(method="bh")` computes the adjusted values; a test is
    rejected when its adjusted p-value is <= q, which is exactly BH's step-up rule.
    """
    _check_level(q)
    array = _p_array(p_values)
    if array.size == 0:
        return Adjusted((), ())
    adjusted = np.asarray(stats.false_discovery_control(array, method="bh"), dtype=np.float64)
    return Adjusted(tuple(float(p) for p in adjusted), tuple(bool(p <= q) for p in adjusted))


def holm(p_values: Sequence[float], alpha: float = 0.05) -> Adjusted:
    """Holm (1979) step-down: adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)).

    scipy has no Holm, so the adjustment is written out (sorted order, running maximum). A test
    is rejected when its adjusted p-value is <= alpha: the family-wise error rate is <= alpha.
    """
    _check_level(alpha)
    array = _p_array(p_values)
    m = array.size
    if m == 0:
        return Adjusted((), ())
    order = np.argsort(array, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * array[order])
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.maximum.accumulate(scaled)
    return Adjusted(tuple(float(p) for p in adjusted), tuple(bool(p <= alpha) for p in adjusted))
