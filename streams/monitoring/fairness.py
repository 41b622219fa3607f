"""Disparity between the values of each segment attribute in one group's window. Pure.

For every attribute (segments "attr=value") and every FairnessConfig metric, each value's
figure is compared with the best value's (the lowest: fewer refusals, flags, errors, a lower
latency) as a ratio with an interval:
- rates ("refusal", "error", "safety_flag", or any QualityWindow rate): the Katz log interval
  of the rate ratio (`llmops.stats.fairness.rate_ratio`);
- quantiles ("latency_p95", "<sample>_p50|p90|p95|p99"): the ratio of the two sample
  quantiles, its interval from the distribution-free order-statistic (binomial) interval of
  each quantile: [low_g / high_best, high_g / low_best], conservative.
A value is flagged when the whole interval lies outside [band_low, band_high] and both sides
have `min_group_responses`; the intervals are simultaneous over the window's comparisons.
`safety_flag` is the window's "safety_flag" rate when it carries one; otherwise the responses
flagged for pii_output, toxic or unsupported are bounded above by the sum of those hits (a
response flagged twice counts twice): an upper bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import stats as scipy_stats

from llmops.monitoring_config import FairnessConfig
from llmops.stats.fairness import Disparity, best_group, outside_band, rate_ratio
from schemas import QualityWindow
from streams.monitoring.alertbook import Condition, window_label

SAFETY_FLAG = "safety_flag"
SAFETY_FLAG_PARTS = ("pii_output", "toxic", "unsupported")
_QUANTILE = re.compile(r"^(?P<feature>.+)_p(?P<q>50|90|95|99)$")
_SAMPLES = {"latency": "latency_ms", "ttft": "ttft_ms"}


def _attribute(segment: str) -> tuple[str, str] | None:
    name, sep, value = segment.partition("=")
    return (name, value) if sep and name else None


def rate_of(window: QualityWindow, metric: str) -> tuple[int, int]:
    """(hits, responses) of a rate metric in a window."""
    if metric == SAFETY_FLAG and SAFETY_FLAG not in window.rate_totals:
        totals = [window.rate_totals.get(p, 0) for p in SAFETY_FLAG_PARTS]
        total = max(totals) if totals else 0
        hits = sum(window.rate_hits.get(p, 0) for p in SAFETY_FLAG_PARTS)
        return min(hits, total), total
    total = window.rate_totals.get(metric, 0)
    return min(window.rate_hits.get(metric, 0), total), total


def quantile_interval(
    values: Sequence[float], q: float, confidence: float
) -> tuple[float, float, float]:
    """The sample quantile and its order-statistic interval (exact binomial ranks)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    alpha = 1.0 - confidence
    low_rank = int(scipy_stats.binom.ppf(alpha / 2.0, n, q))  # 1-based order statistic
    high_rank = int(scipy_stats.binom.ppf(1.0 - alpha / 2.0, n, q)) + 1
    low = float(ordered[max(low_rank, 1) - 1])
    high = float(ordered[min(high_rank, n) - 1])
    return float(np.quantile(ordered, q)), low, high


def quantile_ratio(
    group: Sequence[float], best: Sequence[float], q: float, confidence: float
) -> Disparity:
    est_g, low_g, high_g = quantile_interval(group, q, confidence)
    est_b, low_b, high_b = quantile_interval(best, q, confidence)
    if est_b <= 0.0 or high_b <= 0.0:
        return Disparity(1.0, 0.0, math.inf, len(group), len(best))
    high = high_g / low_b if low_b > 0.0 else math.inf
    return Disparity(est_g / est_b, low_g / high_b, high, len(group), len(best))


@dataclass(frozen=True)
class _Comparison:
    """One value against the best value of its attribute, for one metric."""

    metric: str
    window: QualityWindow
    best: str
    figure: float
    best_figure: float
    disparity: Callable[[float], Disparity]  # at a confidence level


def _condition(comparison: _Comparison, config: FairnessConfig, confidence: float) -> Condition:
    window, metric = comparison.window, comparison.metric
    disparity = comparison.disparity(confidence)
    flagged = comparison.best != window.segment and outside_band(
        disparity, config.band_low, config.band_high, min_n=config.min_group_responses
    )
    return Condition.about(
        window,
        kind="fairness",
        rule=f"fairness_{metric}",
        active=flagged,
        severity=config.severity,
        message=(
            f"{metric} of {window.segment} is {disparity.ratio:.2f}x that of {comparison.best} "
            f"(interval {disparity.low:.2f}-{disparity.high:.2f}, band "
            f"{config.band_low:g}-{config.band_high:g}) for "
            f"{window_label(window, with_segment=False)}"
        ),
        evidence={
            "statistic": "disparity_ratio",
            "value": f"{disparity.ratio:.6g}",
            "low": f"{disparity.low:.6g}",
            "high": f"{disparity.high:.6g}",
            "confidence": f"{confidence:.6g}",
            "threshold": f"{config.band_low:g}-{config.band_high:g}",
            "figure": f"{comparison.figure:.6g}",
            "reference": f"best group {comparison.best}",
            "reference_figure": f"{comparison.best_figure:.6g}",
            "n_group": str(disparity.n_group),
            "n_reference": str(disparity.n_reference),
            "window": window.window_start.isoformat(),
            "segment": window.segment,
        },
    )


def _rate_comparisons(
    metric: str, values: Mapping[str, QualityWindow], config: FairnessConfig
) -> list[_Comparison]:
    rates = {segment: rate_of(window, metric) for segment, window in values.items()}
    best = best_group(rates, lower_is_better=True, min_n=config.min_group_responses)
    if best is None:
        return []
    kb, nb = rates[best]
    comparisons = []
    for segment, (k, n) in rates.items():
        if n < config.min_group_responses:
            continue
        comparisons.append(
            _Comparison(
                metric,
                values[segment],
                best,
                k / n,
                kb / nb,
                partial(rate_ratio, k, n, kb, nb),
            )
        )
    return comparisons


def _quantile_comparisons(
    metric: str, feature: str, q: float, values: Mapping[str, QualityWindow], config: FairnessConfig
) -> list[_Comparison]:
    samples = {
        segment: list(window.sample.get(feature, ()))
        for segment, window in values.items()
        if len(window.sample.get(feature, ())) >= config.min_group_responses
        and window.responses >= config.min_group_responses
    }
    if len(samples) < 2:
        return []
    figures = {segment: float(np.quantile(sample, q)) for segment, sample in samples.items()}
    best = min(figures, key=lambda s: (figures[s], -len(samples[s]), s))
    return [
        _Comparison(
            metric,
            values[segment],
            best,
            figures[segment],
            figures[best],
            partial(quantile_ratio, sample, samples[best], q),
        )
        for segment, sample in samples.items()
    ]


def fairness_conditions(
    windows: Sequence[QualityWindow], config: FairnessConfig
) -> list[Condition]:
    """The disparity conditions of one group's window, attribute by attribute.

    The intervals are simultaneous over the window's comparisons (Bonferroni: each at
    1 - (1 - confidence) / comparisons), and each value is compared with the best one: the
    best of several equal groups is low by chance, which unadjusted intervals would flag.
    """
    by_attribute: dict[str, dict[str, QualityWindow]] = {}
    for window in windows:
        parsed = _attribute(window.segment)
        if parsed is not None:
            by_attribute.setdefault(parsed[0], {})[window.segment] = window
    comparisons: list[_Comparison] = []
    for values in by_attribute.values():
        if len(values) < 2:
            continue
        for metric in config.metrics:
            match = _QUANTILE.match(metric)
            if match is not None:
                feature = _SAMPLES.get(match["feature"], match["feature"])
                q = int(match["q"]) / 100.0
                comparisons.extend(_quantile_comparisons(metric, feature, q, values, config))
            else:
                comparisons.extend(_rate_comparisons(metric, values, config))
    tests = sum(1 for c in comparisons if c.best != c.window.segment)
    confidence = 1.0 - (1.0 - config.confidence) / max(tests, 1)
    return [_condition(c, config, confidence) for c in comparisons]
