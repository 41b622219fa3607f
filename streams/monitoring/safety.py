"""Safety rates of one group's window against their ceilings and their reference. Pure.

For every SafetyRule and every segment of the window (the whole group included):
- ceiling (rule `<rate>_rate`): the window's rate above `max_rate`, judged only with at least
  `min_responses` responses the rate applies to;
- jump (rule `<rate>_jump`): the one-sided two-proportion z test of the window's rate above
  the reference's, its p-value adjusted by Benjamini-Hochberg across every jump test of the
  window, below `jump_alpha`. Needs `min_responses` on both sides, a reference, and at least
  5 expected hits and 5 expected misses on each side under the pooled rate (the textbook
  condition for the z test's normal approximation: below it, a rare rate such as 1% errors
  in 150 responses makes the test fire far more often than its alpha says).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmops.monitoring_config import SafetyRule
from llmops.stats.multiple import benjamini_hochberg
from llmops.stats.proportions import two_proportion_z_test, wilson_interval
from schemas import QualityWindow
from streams.monitoring.alertbook import Condition, window_label
from streams.monitoring.reference import Reference

MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class _Jump:
    rule: SafetyRule
    window: QualityWindow
    reference: Reference
    statistic: float
    p_value: float


def _rate(window: QualityWindow | Reference, name: str) -> tuple[int, int]:
    return window.rate_hits.get(name, 0), window.rate_totals.get(name, 0)


def _ceiling(rule: SafetyRule, window: QualityWindow) -> Condition | None:
    hits, total = _rate(window, rule.rate)
    if total < rule.min_responses:
        return None
    rate = wilson_interval(min(hits, total), total)
    active = rate.estimate > rule.max_rate
    return Condition.about(
        window,
        kind="safety",
        rule=f"{rule.rate}_rate",
        active=active,
        severity=rule.severity,
        message=(
            f"{rule.rate} rate {rate.estimate:.3f} ({hits}/{total}) "
            f"{'above' if active else 'within'} {rule.max_rate:g} for {window_label(window)}"
        ),
        evidence={
            "statistic": "rate",
            "value": f"{rate.estimate:.6g}",
            "low": f"{rate.low:.6g}",
            "high": f"{rate.high:.6g}",
            "threshold": f"{rule.max_rate:g}",
            "hits": str(hits),
            "responses": str(total),
            "window": window.window_start.isoformat(),
            "segment": window.segment,
        },
    )


def _jump(rule: SafetyRule, window: QualityWindow, reference: Reference | None) -> _Jump | None:
    if rule.jump_alpha <= 0.0 or reference is None:
        return None
    hits, total = _rate(window, rule.rate)
    ref_hits, ref_total = _rate(reference, rule.rate)
    if total < rule.min_responses or ref_total < rule.min_responses:
        return None
    pooled = (hits + ref_hits) / (total + ref_total)
    if min(total, ref_total) * min(pooled, 1.0 - pooled) < MIN_EXPECTED:
        return None
    test = two_proportion_z_test(
        min(hits, total), total, min(ref_hits, ref_total), ref_total, alternative="greater"
    )
    return _Jump(rule, window, reference, test.statistic, test.p_value)


def _jump_condition(jump: _Jump, p_adjusted: float) -> Condition:
    rule, window, reference = jump.rule, jump.window, jump.reference
    hits, total = _rate(window, rule.rate)
    ref_hits, ref_total = _rate(reference, rule.rate)
    active = p_adjusted < rule.jump_alpha
    rate, ref_rate = hits / total, ref_hits / ref_total
    return Condition.about(
        window,
        kind="safety",
        rule=f"{rule.rate}_jump",
        active=active,
        severity=rule.severity,
        message=(
            f"{rule.rate} rate {rate:.3f} vs {ref_rate:.3f} in the reference "
            f"(adjusted p {p_adjusted:.2g}, alpha {rule.jump_alpha:g}) for {window_label(window)}"
        ),
        evidence={
            "statistic": "two_proportion_z",
            "value": f"{jump.statistic:.6g}",
            "p_value": f"{jump.p_value:.6g}",
            "p_adjusted": f"{p_adjusted:.6g}",
            "threshold": f"{rule.jump_alpha:g}",
            "rate": f"{rate:.6g}",
            "reference_rate": f"{ref_rate:.6g}",
            "responses": str(total),
            "reference_responses": str(ref_total),
            "reference": reference.description,
            "window": window.window_start.isoformat(),
            "segment": window.segment,
        },
    )


def safety_conditions(
    windows: Sequence[tuple[QualityWindow, Reference | None]], rules: Sequence[SafetyRule]
) -> list[Condition]:
    """The ceiling and jump conditions of one group's window (every segment)."""
    conditions: list[Condition] = []
    jumps: list[_Jump] = []
    for window, reference in windows:
        for rule in rules:
            ceiling = _ceiling(rule, window)
            if ceiling is not None:
                conditions.append(ceiling)
            jump = _jump(rule, window, reference)
            if jump is not None:
                jumps.append(jump)
    if jumps:
        adjusted = benjamini_hochberg([j.p_value for j in jumps]).p_values
        conditions.extend(_jump_condition(j, p) for j, p in zip(jumps, adjusted, strict=True))
    return conditions
