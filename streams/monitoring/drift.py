"""Drift of one window (and segment) against its reference, feature by feature. Pure.

Numeric features are tested on the windows' samples, categorical ones on their counts, with
Evidently's default method for the reference's size and the column's kind
(`llmops.stats.drift.default_method`: KS up to 1000 reference values, Wasserstein (normed)
above; chi-square or the z test up to 1000, Jensen-Shannon above), unless DriftConfig names a
method or a threshold for the feature. Numeric features get a PSI row besides, for readers
(it decides nothing unless it is the feature's method). The output embedding is tested by the
cosine distance between the centroids (sum / count) of the window and the reference, and,
when both carry embedding samples (at least MMD_MIN_CURRENT and MMD_MIN_REFERENCE vectors),
by the maximum mean discrepancy of the samples (RBF kernel, statistic MMD², p-value from
MMD_PERMUTATIONS permutations seeded by the window and segment, so a replay gets the same
p-value). The MMD test is then the feature's decisive one (Benjamini-Hochberg, the streak, the
alert) and the cosine distance a row for readers, as PSI is beside KS; without samples the
cosine distance decides, as before.

Every p-valued test of one group's window (all its segments and features) is adjusted
together by Benjamini-Hochberg; such a test drifts when its adjusted p-value crosses its
threshold, which is DriftConfig.fdr unless the feature names its own.

A distance (Wasserstein, Jensen-Shannon, PSI as a feature's method) has no p-value of its
own, and on a small window it is noisy: a 150-response window against a 1,500-value reference
crosses Wasserstein's 0.1 in about a third of unshifted windows. So a distance drifts when it
crosses its threshold (Evidently's criterion, same value) AND the window's difference is
significant: the KS test (numeric) or chi-square (categorical) on the same data, its p-value
reported in the row and adjusted by Benjamini-Hochberg with the rest, at DriftConfig.fdr.
The value and the threshold agree with Evidently; the decision is stricter where it is noise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from llmops.monitoring_config import DriftConfig
from llmops.stats import drift as stats
from llmops.stats.multiple import benjamini_hochberg
from schemas import DriftReport, QualityWindow
from streams import sketches
from streams.monitoring.alertbook import Condition, rule_name, window_label
from streams.monitoring.reference import Reference
from streams.monitoring.streaks import Streaks

EMBEDDING = "embedding"
# Centroid cosine distance at which the output embeddings count as drifted (not Evidently's:
# it trains a classifier on the embeddings, which windows do not keep).
EMBEDDING_THRESHOLD = 0.1
# MMD of the embedding samples: the fewest vectors worth testing, and the permutations of the
# p-value (its cost: one (n+m)² kernel and a (n+m) x permutations product, n+m <= 32+256).
MMD_MIN_CURRENT = 8
MMD_MIN_REFERENCE = 16
MMD_PERMUTATIONS = 200
METHODS: frozenset[str] = frozenset(stats.THRESHOLDS) | {"cosine", "mmd"}
_NUMERIC: frozenset[str] = frozenset({"ks", "wasserstein", "psi"})
_CATEGORICAL: frozenset[str] = frozenset({"chisquare", "z", "jensenshannon", "psi"})


@dataclass(frozen=True)
class DriftTest:
    """One statistic of one feature and segment. `decisive`: the feature's chosen method
    (its result counts towards the streak and the alert); the PSI companion row is not."""

    feature: str
    segment: str
    statistic: str
    value: float
    threshold: float
    p_value: float | None
    drifted: bool
    decisive: bool
    reference_size: int
    current_size: int
    p_adjusted: float | None = None
    # The p-value confirms a distance (drift: value >= threshold and p_adjusted <= fdr)
    # rather than deciding by itself against `threshold`.
    confirms: bool = False


def check_config(config: DriftConfig) -> None:
    """Refuse a method override no test provides (at start, not in the middle of a stream)."""
    unknown = sorted(set(config.methods.values()) - METHODS)
    if unknown:
        raise ValueError(f"unknown drift method(s) {', '.join(unknown)}; known: {sorted(METHODS)}")


def _choice(config: DriftConfig, feature: str, default: stats.MethodChoice) -> stats.MethodChoice:
    method = config.methods.get(feature)
    choice = stats.THRESHOLDS.get(method, default) if method else default  # type: ignore[call-overload]
    if choice.p_value:
        choice = replace(choice, threshold=config.fdr)
    if feature in config.thresholds:
        choice = replace(choice, threshold=config.thresholds[feature])
    return choice


def _count_values(values: Sequence[float]) -> dict[float, int]:
    return dict(Counter(values))


def _categorical(
    feature: str,
    segment: str,
    reference: Mapping[str, int] | Mapping[float, int],
    current: Mapping[str, int] | Mapping[float, int],
    choice: stats.MethodChoice,
) -> DriftTest:
    ref: dict[Hashable, float] = {key: float(n) for key, n in reference.items()}
    cur: dict[Hashable, float] = {key: float(n) for key, n in current.items()}
    n_unique = len(set(ref) | set(cur))
    if choice.method == "z" and n_unique > 2:
        choice = replace(stats.THRESHOLDS["chisquare"], threshold=choice.threshold)
    sizes = (int(sum(ref.values())), int(sum(cur.values())))
    if choice.method in ("jensenshannon", "psi"):
        if choice.method == "jensenshannon":
            value = stats.jensen_shannon(ref, cur)
        else:
            value = stats.psi_categorical(ref, cur)
        confirm = stats.chi_square_test(ref, cur).p_value
        return DriftTest(
            feature, segment, choice.method, value, choice.threshold, confirm,
            stats.drifted(choice, value), True, *sizes, confirms=True,
        )  # fmt: skip
    test = (
        stats.z_test_binary(ref, cur) if choice.method == "z" else stats.chi_square_test(ref, cur)
    )
    statistic = min(test.statistic, 1e15) if test.statistic > 0 else max(test.statistic, -1e15)
    return DriftTest(
        feature, segment, choice.method, statistic, choice.threshold, test.p_value,
        stats.drifted(choice, test.p_value), True, *sizes,
    )  # fmt: skip


def _numeric(
    feature: str,
    segment: str,
    reference: Sequence[float],
    current: Sequence[float],
    config: DriftConfig,
) -> list[DriftTest]:
    n_unique = len(set(reference) | set(current))
    choice = _choice(config, feature, stats.default_method("numeric", len(reference), n_unique))
    sizes = (len(reference), len(current))
    psi_choice = (
        _choice(config, feature, stats.THRESHOLDS["psi"])
        if choice.method == "psi"
        else (stats.THRESHOLDS["psi"])
    )
    psi_value = stats.psi(reference, current)
    psi_row = DriftTest(
        feature, segment, "psi", psi_value, psi_choice.threshold, None,
        stats.drifted(psi_choice, psi_value), False, *sizes,
    )  # fmt: skip
    if choice.method == "psi":
        confirm = stats.ks_test(reference, current).p_value
        return [replace(psi_row, decisive=True, p_value=confirm, confirms=True)]
    if choice.method in _CATEGORICAL:  # few distinct values, or a categorical method named
        test = _categorical(
            feature, segment, _count_values(reference), _count_values(current), choice
        )
        return [replace(test, reference_size=sizes[0], current_size=sizes[1]), psi_row]
    if choice.method == "ks":
        result = stats.ks_test(reference, current)
        main = DriftTest(
            feature, segment, "ks", result.statistic, choice.threshold, result.p_value,
            stats.drifted(choice, result.p_value), True, *sizes,
        )  # fmt: skip
    else:
        value = stats.wasserstein_normed(reference, current)
        confirm = stats.ks_test(reference, current).p_value
        main = DriftTest(
            feature, segment, "wasserstein", value, choice.threshold, confirm,
            stats.drifted(choice, value), True, *sizes, confirms=True,
        )  # fmt: skip
    return [main, psi_row]


def _embedding(
    segment: str, reference: Reference, current: QualityWindow, config: DriftConfig
) -> list[DriftTest]:
    if current.embedded < config.min_current or reference.embedded < config.min_reference:
        return []
    if len(reference.embedding_sum) != len(current.embedding_sum) or not current.embedding_sum:
        return []
    ref = [v / reference.embedded for v in reference.embedding_sum]
    cur = [v / current.embedded for v in current.embedding_sum]
    threshold = config.thresholds.get(EMBEDDING, EMBEDDING_THRESHOLD)
    value = stats.centroid_cosine_distance(ref, cur)
    mmd = _mmd(segment, reference, current, config)
    cosine = DriftTest(
        EMBEDDING, segment, "cosine", value, threshold, None, value >= threshold, mmd is None,
        reference.embedded, current.embedded,
    )  # fmt: skip
    return [cosine] if mmd is None else [mmd, cosine]


def mmd_seed(current: QualityWindow) -> int:
    """The permutations' seed: the window's start, group and segment (not its content), so
    the same window evaluated again gets the same p-value."""
    key = (
        f"{current.window_start.isoformat()}|{current.prompt_name}|{current.prompt_version}|"
        f"{current.variant}|{current.pool}|{current.model}|{current.segment}"
    )
    return sketches.stable_hash(key)


def _mmd(
    segment: str, reference: Reference, current: QualityWindow, config: DriftConfig
) -> DriftTest | None:
    if config.methods.get(EMBEDDING) == "cosine":  # the centroids alone, as configured
        return None
    ref, cur = reference.embedding_sample, current.embedding_sample
    if len(cur) < MMD_MIN_CURRENT or len(ref) < MMD_MIN_REFERENCE:
        return None
    if len(ref[0]) != len(cur[0]) or len(cur[0]) != len(current.embedding_sum):
        return None
    rng = np.random.default_rng(mmd_seed(current))
    result = stats.mmd_test(
        np.asarray(ref, dtype=np.float64),
        np.asarray(cur, dtype=np.float64),
        rng,
        permutations=MMD_PERMUTATIONS,
    )
    return DriftTest(
        EMBEDDING, segment, "mmd", result.statistic, config.fdr, result.p_value,
        result.p_value < config.fdr, True, len(ref), len(cur),
    )  # fmt: skip


def window_tests(
    current: QualityWindow, reference: Reference, config: DriftConfig
) -> list[DriftTest]:
    """Every configured feature the window and its reference both have enough data for
    (unadjusted: `adjust` applies Benjamini-Hochberg over the whole group's window)."""
    tests: list[DriftTest] = []
    segment = current.segment
    for feature in config.features:
        if feature == EMBEDDING:
            tests.extend(_embedding(segment, reference, current, config))
        elif feature in current.sample and feature in reference.sample:
            ref, cur = list(reference.sample[feature]), list(current.sample[feature])
            if len(cur) >= config.min_current and len(ref) >= config.min_reference:
                tests.extend(_numeric(feature, segment, ref, cur, config))
        elif feature in current.categories and feature in reference.categories:
            ref_counts, cur_counts = reference.categories[feature], current.categories[feature]
            if sum(cur_counts.values()) < config.min_current or (
                sum(ref_counts.values()) < config.min_reference
            ):
                continue
            default = stats.default_method(
                "categorical", sum(ref_counts.values()), len(set(ref_counts) | set(cur_counts))
            )
            choice = _choice(config, feature, default)
            if choice.method not in _CATEGORICAL:
                choice = _choice(config, "", default)  # a numeric method named: the default
            tests.append(_categorical(feature, segment, ref_counts, cur_counts, choice))
    return tests


def adjust(tests: Sequence[DriftTest], fdr: float) -> list[DriftTest]:
    """Benjamini-Hochberg over the p-valued tests; a p-valued test drifts by its adjusted
    p-value, a distance only when its confirming adjusted p-value is <= fdr as well."""
    indexed = [i for i, test in enumerate(tests) if test.p_value is not None]
    adjusted = benjamini_hochberg([tests[i].p_value or 0.0 for i in indexed], fdr).p_values
    out = list(tests)
    for i, p in zip(indexed, adjusted, strict=True):
        test = tests[i]
        if test.confirms:
            drifted = test.value >= test.threshold and p <= fdr
        else:
            choice = stats.MethodChoice(test.statistic, test.threshold, True)  # type: ignore[arg-type]
            drifted = stats.drifted(choice, p)
        out[i] = replace(test, p_adjusted=p, drifted=drifted)
    return out


def drift_results(
    referenced: Sequence[tuple[QualityWindow, Reference | None]],
    config: DriftConfig,
    streaks: Streaks,
) -> tuple[list[DriftReport], list[Condition]]:
    """One group's window (every segment with its reference): a report per test, adjusted
    together, and an alert condition per decisive test, active once its streak reaches
    `config.persistence`."""
    tests: list[tuple[QualityWindow, Reference, DriftTest]] = []
    for window, reference in referenced:
        if reference is not None:
            found = window_tests(window, reference, config)
            tests.extend((window, reference, test) for test in found)
    adjusted = adjust([t for _, _, t in tests], config.fdr)
    reports: list[DriftReport] = []
    conditions: list[Condition] = []
    for (window, reference, _), test in zip(tests, adjusted, strict=True):
        streak = streaks.count(window, test.feature, test.drifted) if test.decisive else 0
        reports.append(_report(window, reference, test, streak))
        if test.decisive:
            conditions.append(_condition(window, reference, test, streak, config))
    return reports, conditions


def _condition(
    window: QualityWindow, reference: Reference, test: DriftTest, streak: int, config: DriftConfig
) -> Condition:
    score = test.p_adjusted if test.p_adjusted is not None else test.value
    return Condition.about(
        window,
        kind="drift",
        rule=rule_name(f"drift_{test.feature}"),
        active=streak >= config.persistence,
        severity=config.severity,
        message=(
            f"{test.feature} drifted {streak} window(s) in a row ({test.statistic} "
            f"{score:.4g}, threshold {test.threshold:g}) against {reference.description} "
            f"for {window_label(window)}"
        ),
        evidence={
            "statistic": test.statistic,
            "value": f"{test.value:.6g}",
            "p_value": "" if test.p_value is None else f"{test.p_value:.6g}",
            "p_adjusted": "" if test.p_adjusted is None else f"{test.p_adjusted:.6g}",
            "threshold": f"{test.threshold:g}",
            "streak": str(streak),
            "persistence": str(config.persistence),
            "reference": reference.description,
            "reference_size": str(test.reference_size),
            "current_size": str(test.current_size),
            "window": window.window_start.isoformat(),
            "segment": window.segment,
        },
    )


def _clamp(value: float) -> float:
    return max(-1e15, min(1e15, value))


def _report(
    window: QualityWindow, reference: Reference, test: DriftTest, streak: int
) -> DriftReport:
    return DriftReport(
        ts=window.window_end,
        window_start=window.window_start,
        window_end=window.window_end,
        prompt_name=window.prompt_name,
        prompt_version=window.prompt_version,
        variant=window.variant,
        pool=window.pool,
        model=window.model,
        feature=test.feature,
        segment=window.segment,
        statistic=test.statistic,
        value=_clamp(test.value),
        p_value=test.p_value,
        p_adjusted=test.p_adjusted,
        threshold=_clamp(test.threshold),
        drifted=test.drifted,
        streak=streak,
        reference=reference.description[:512],
        reference_size=test.reference_size,
        current_size=test.current_size,
    )
