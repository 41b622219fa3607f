"""An experiment's comparison of each treatment with control, per metric. Pure.

Input is what ClickHouse aggregates (counts, sums, sums of squares, per-unit moments,
quantiles, a bounded sample for the rank test): nothing here needs the raw rows. Per metric:
the fixed-horizon test of its kind (llmops.stats.experiments), the always-valid p-value and
confidence sequence of the mSPRT at this look (llmops.stats.sequential: valid whenever it is
read, so the report can be watched every minute), Holm's correction across the metrics of a
treatment on both, the sample ratio check, and a verdict in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from llmops.experiments.metrics import Metric
from llmops.stats.experiments import (
    Comparison,
    SampleRatioCheck,
    compare_mann_whitney,
    compare_proportions,
    correct,
    sample_ratio_mismatch,
)
from llmops.stats.proportions import z_for
from llmops.stats.results import Interval
from llmops.stats.sequential import (
    SequentialState,
    means_difference,
    msprt_update,
    proportions_difference,
)

ALPHA = 0.05
MIN_PER_ARM = 2  # below it a metric is reported as not enough data


@dataclass(frozen=True)
class Moments:
    """n values, their sum and sum of squares."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Sample variance (ddof 1), never negative (float cancellation)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.n * self.mean**2) / (self.n - 1))


@dataclass(frozen=True)
class UnitMoments:
    """Per-unit sums x (cost) and counts y (requests) over `units` units."""

    units: int
    x: float
    y: float
    xx: float
    yy: float
    xy: float


@dataclass
class VariantData:
    """What the store aggregated for one variant."""

    rates: dict[str, tuple[int, int]] = field(default_factory=dict)  # metric -> (hits, n)
    moments: dict[str, Moments] = field(default_factory=dict)
    quantiles: dict[str, tuple[float, float]] = field(default_factory=dict)  # p50, p95
    samples: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    ratio: UnitMoments | None = None
    responses: int = 0
    units: int = 0  # units seen since the allocation last changed (for the SRM check)


@dataclass(frozen=True)
class MetricResult:
    metric: str
    label: str
    kind: str
    variant: str
    test: str
    control: float
    treatment: float
    difference: Interval
    relative: float | None
    p_value: float
    always_valid_p: float
    cs_low: float
    cs_high: float
    n_control: int
    n_treatment: int
    better: str
    p_adjusted: float = 1.0
    always_valid_adjusted: float = 1.0
    quantiles_control: tuple[float, float] | None = None
    quantiles_treatment: tuple[float, float] | None = None

    @property
    def significant(self) -> bool:
        """Significant by the always-valid test after Holm: safe whenever it is read."""
        return self.always_valid_adjusted < ALPHA

    @property
    def direction(self) -> str:
        """'better', 'worse' or 'different' (a metric with no good side), when significant."""
        if not self.significant:
            return "none"
        if self.better == "none":
            return "different"
        up = self.difference.estimate > 0
        return "better" if up == (self.better == "higher") else "worse"


def welch_from_moments(
    control: Moments, treatment: Moments, confidence: float = 0.95
) -> Comparison:
    """Welch's t test from summary statistics (`scipy.stats.ttest_ind_from_stats`) and the
    Welch-Satterthwaite interval of the difference of means."""
    z_for(confidence)
    m_c, m_t = control.mean, treatment.mean
    v_c, v_t = control.variance, treatment.variance
    difference = m_t - m_c
    relative = None if m_c == 0 else difference / m_c
    se2 = v_t / treatment.n + v_c / control.n
    if se2 == 0.0:
        p = 1.0 if difference == 0 else 0.0
        return Comparison(
            "Welch t",
            m_c,
            m_t,
            Interval(difference, difference, difference),
            relative,
            0.0,
            p,
            control.n,
            treatment.n,
        )
    result = stats.ttest_ind_from_stats(
        m_t, math.sqrt(v_t), treatment.n, m_c, math.sqrt(v_c), control.n, equal_var=False
    )
    df = se2**2 / (
        (v_t / treatment.n) ** 2 / (treatment.n - 1) + (v_c / control.n) ** 2 / (control.n - 1)
    )
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(se2)
    return Comparison(
        "Welch t",
        m_c,
        m_t,
        Interval(difference, difference - half, difference + half),
        relative,
        float(result.statistic),
        float(result.pvalue),
        control.n,
        treatment.n,
    )


def ratio_from_moments(moments: UnitMoments) -> tuple[float, float]:
    """R = mean(x)/mean(y) over units and its delta-method variance (the formula of
    llmops.stats.experiments.ratio_estimate, from sums instead of arrays)."""
    n = moments.units
    if n < 2 or moments.y <= 0:
        raise ValueError("the delta method needs at least two units with requests")
    mu_x, mu_y = moments.x / n, moments.y / n
    s_xx = (moments.xx - n * mu_x * mu_x) / (n - 1)
    s_yy = (moments.yy - n * mu_y * mu_y) / (n - 1)
    s_xy = (moments.xy - n * mu_x * mu_y) / (n - 1)
    variance = (s_xx / mu_y**2 - 2 * mu_x * s_xy / mu_y**3 + mu_x**2 * s_yy / mu_y**4) / n
    return mu_x / mu_y, max(0.0, variance)


def ratio_comparison(
    control: UnitMoments, treatment: UnitMoments, confidence: float = 0.95
) -> tuple[Comparison, float]:
    """The delta-method z test of the ratio difference; also returns its variance."""
    z = z_for(confidence)
    r_c, v_c = ratio_from_moments(control)
    r_t, v_t = ratio_from_moments(treatment)
    difference = r_t - r_c
    se = math.sqrt(v_c + v_t)
    if se == 0.0:
        statistic, p = 0.0, 1.0 if difference == 0 else 0.0
    else:
        statistic = difference / se
        p = float(min(1.0, 2 * stats.norm.sf(abs(statistic))))
    comparison = Comparison(
        "delta method z",
        r_c,
        r_t,
        Interval(difference, difference - z * se, difference + z * se),
        None if r_c == 0 else difference / r_c,
        statistic,
        p,
        control.units,
        treatment.units,
    )
    return comparison, v_c + v_t


def _sequential(difference: float, variance: float, tau: float) -> SequentialState:
    if variance <= 0.0 or tau <= 0.0 or not math.isfinite(tau):
        return SequentialState(1, difference)
    return msprt_update(SequentialState(), difference, variance, tau, ALPHA)


def _result(
    metric: Metric,
    variant: str,
    comparison: Comparison,
    state: SequentialState,
) -> MetricResult:
    return MetricResult(
        metric.name,
        metric.label,
        metric.kind,
        variant,
        comparison.test,
        comparison.control,
        comparison.treatment,
        comparison.difference,
        comparison.relative,
        comparison.p_value,
        state.p_value,
        state.low,
        state.high,
        comparison.n_control,
        comparison.n_treatment,
        metric.better,
    )


def compare_metric(
    metric: Metric, variant: str, control: VariantData, treatment: VariantData
) -> MetricResult | None:
    """One metric of one treatment against control; None when either arm lacks data."""
    if metric.kind == "rate":
        if metric.name not in control.rates or metric.name not in treatment.rates:
            return None
        (hc, nc), (ht, nt) = control.rates[metric.name], treatment.rates[metric.name]
        if nc < MIN_PER_ARM or nt < MIN_PER_ARM:
            return None
        comparison = compare_proportions(hc, nc, ht, nt)
        d, variance = proportions_difference(hc, nc, ht, nt)
        return _result(metric, variant, comparison, _sequential(d, variance, metric.tau))
    if metric.kind == "ratio":
        if control.ratio is None or treatment.ratio is None:
            return None
        if min(control.ratio.units, treatment.ratio.units) < MIN_PER_ARM:
            return None
        comparison, variance = ratio_comparison(control.ratio, treatment.ratio)
        tau = metric.tau * abs(comparison.control) if comparison.control else metric.tau
        state = _sequential(comparison.difference.estimate, variance, tau)
        return _result(metric, variant, comparison, state)
    mc, mt = control.moments.get(metric.name), treatment.moments.get(metric.name)
    if mc is None or mt is None or mc.n < MIN_PER_ARM or mt.n < MIN_PER_ARM:
        return None
    d, variance = means_difference(mc.mean, mc.variance, mc.n, mt.mean, mt.variance, mt.n)
    state = _sequential(d, variance, metric.tau * math.sqrt(mc.variance))
    sample_c = control.samples.get(metric.name)
    sample_t = treatment.samples.get(metric.name)
    if metric.kind == "skewed" and sample_c is not None and sample_t is not None:
        if sample_c.size >= 1 and sample_t.size >= 1:
            comparison = compare_mann_whitney(sample_c, sample_t)
        else:
            comparison = welch_from_moments(mc, mt)
    else:
        comparison = welch_from_moments(mc, mt)
    result = _result(metric, variant, comparison, state)
    if metric.kind == "skewed":
        result = _with_quantiles(result, control, treatment, metric.name)
    return result


def _with_quantiles(
    result: MetricResult, control: VariantData, treatment: VariantData, name: str
) -> MetricResult:
    from dataclasses import replace

    return replace(
        result,
        quantiles_control=control.quantiles.get(name),
        quantiles_treatment=treatment.quantiles.get(name),
    )


def adjust(results: Sequence[MetricResult]) -> list[MetricResult]:
    """Holm across one treatment's metrics, on the fixed-horizon and the always-valid p."""
    from dataclasses import replace

    if not results:
        return []
    fixed = correct([r.p_value for r in results], "holm", ALPHA)
    valid = correct([r.always_valid_p for r in results], "holm", ALPHA)
    return [
        replace(r, p_adjusted=p, always_valid_adjusted=a)
        for r, p, a in zip(results, fixed.p_values, valid.p_values, strict=True)
    ]


@dataclass(frozen=True)
class Analysis:
    experiment: str
    control: str
    variants: tuple[str, ...]
    responses: dict[str, int]
    results: tuple[MetricResult, ...]
    srm: SampleRatioCheck | None
    expected_shares: dict[str, float]
    verdict: tuple[str, ...]


def analyze(
    experiment: str,
    control: str,
    data: Mapping[str, VariantData],
    metrics: Sequence[Metric],
    shares: Mapping[str, float],
) -> Analysis:
    """Every treatment against control on every metric; SRM over the live variants' units
    against their configured shares; the verdict."""
    if control not in data:
        raise ValueError(f"no responses for the control variant {control!r}")
    treatments = [v for v in data if v != control]
    results: list[MetricResult] = []
    for variant in treatments:
        compared = [compare_metric(m, variant, data[control], data[variant]) for m in metrics]
        results.extend(adjust([r for r in compared if r is not None]))
    live = [v for v in data if shares.get(v, 0.0) > 0]
    srm = None
    if len(live) >= 2:
        srm = sample_ratio_mismatch([data[v].units for v in live], [shares[v] for v in live])
    responses = {v: d.responses for v, d in data.items()}
    verdict = tuple(_verdict(experiment, control, treatments, results, srm, responses))
    return Analysis(
        experiment,
        control,
        (control, *treatments),
        responses,
        tuple(results),
        srm,
        dict(shares),
        verdict,
    )


def _verdict(
    experiment: str,
    control: str,
    treatments: Sequence[str],
    results: Sequence[MetricResult],
    srm: SampleRatioCheck | None,
    responses: Mapping[str, int],
) -> list[str]:
    lines = []
    if srm is not None and srm.mismatch:
        lines.append(
            "SAMPLE RATIO MISMATCH: the variants got "
            f"{', '.join(str(c) for c in srm.observed)} units where "
            f"{', '.join(f'{e:.0f}' for e in srm.expected)} were expected "
            f"(chi-square p = {srm.p_value:.2g} < 0.001). Assignment is broken (a variant "
            "failing before it logs, bots, a filter): do not trust any result below."
        )
    if not treatments:
        lines.append(f"only the control {control!r} has responses: nothing to compare yet.")
    for variant in treatments:
        mine = [r for r in results if r.variant == variant]
        worse = [r for r in mine if r.direction == "worse"]
        better = [r for r in mine if r.direction == "better"]
        different = [r for r in mine if r.direction == "different"]
        if worse:
            lines.append(
                f"{variant} is WORSE than {control} on "
                + ", ".join(_effect(r) for r in worse)
                + ": do not promote it."
            )
        if better:
            lines.append(
                f"{variant} is better than {control} on " + ", ".join(_effect(r) for r in better)
            )
        if different:
            lines.append(
                f"{variant} differs from {control} on " + ", ".join(_effect(r) for r in different)
            )
        if not (worse or better or different):
            lines.append(
                f"no significant difference between {variant} and {control} yet "
                f"({responses.get(variant, 0)} vs {responses.get(control, 0)} responses): "
                "keep it running, it is safe to look again at any time."
            )
        elif better and not worse:
            lines.append(
                f"{variant} wins on what differs: `llmops experiments promote {experiment} "
                f"{variant}` moves the production label to it."
            )
    return lines


def _effect(result: MetricResult) -> str:
    d = result.difference.estimate
    if result.kind == "rate":
        size = f"{d * 100:+.1f} points"
    elif result.relative is not None:
        size = f"{result.relative * 100:+.1f}%"
    else:
        size = f"{d:+.3g}"
    return f"{result.metric} ({size}, always-valid p = {result.always_valid_adjusted:.2g})"
