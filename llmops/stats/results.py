"""The small value types every statistic here returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided confidence interval, low <= estimate <= high."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    """A test's statistic and its p-value (always a number in [0, 1], never NaN)."""

    __test__ = False  # not a pytest test class, despite the name

    statistic: float
    p_value: float
