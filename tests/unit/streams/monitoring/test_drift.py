from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from llmops.monitoring_config import DriftConfig
from llmops.stats import drift as stats
from llmops.stats.multiple import benjamini_hochberg
from schemas import QualityWindow
from streams.monitoring.drift import (
    MMD_MIN_CURRENT,
    MMD_MIN_REFERENCE,
    DriftTest,
    adjust,
    check_config,
    mmd_seed,
    window_tests,
)
from streams.monitoring.reference import MAX_REFERENCE_EMBEDDINGS, Reference, merge_reference
from tests.unit.streams.monitoring.kit import simulated, window

RNG_SEED = 7


def drift_of(reference_values: list[float], current_values: list[float], **config: object):
    chunks = [reference_values[i : i + 500] for i in range(0, len(reference_values), 500)]
    reference = merge_reference(
        [window(-i, sample={"latency_ms": chunk}) for i, chunk in enumerate(chunks)], "ref"
    )
    current = window(1, sample={"latency_ms": current_values})
    return window_tests(current, reference, DriftConfig(features=["latency_ms"], **config))  # type: ignore[arg-type]


def by_statistic(found: list[DriftTest]) -> dict[str, DriftTest]:
    return {t.statistic: t for t in found}


def test_a_small_numeric_reference_gets_ks_and_a_psi_companion() -> None:
    rng = np.random.default_rng(RNG_SEED)
    ref, cur = rng.normal(0, 1, 800).tolist(), rng.normal(0, 1, 200).tolist()
    found = by_statistic(drift_of(ref, cur))
    assert set(found) == {"ks", "psi"}
    ks = stats.ks_test(ref, cur)
    assert found["ks"].value == ks.statistic and found["ks"].p_value == ks.p_value
    assert found["ks"].decisive and not found["psi"].decisive
    assert found["psi"].value == pytest.approx(stats.psi(ref, cur))
    assert found["ks"].threshold == 0.05  # DriftConfig.fdr


def test_a_large_numeric_reference_gets_wasserstein_normed() -> None:
    rng = np.random.default_rng(RNG_SEED)
    ref, cur = rng.normal(0, 1, 1500).tolist(), rng.normal(0.5, 1, 200).tolist()
    found = by_statistic(drift_of(ref, cur))
    assert set(found) == {"wasserstein", "psi"}
    assert found["wasserstein"].value == pytest.approx(stats.wasserstein_normed(ref, cur))
    # Its p-value is the KS test's on the same values: it confirms the distance.
    assert found["wasserstein"].p_value == stats.ks_test(ref, cur).p_value
    assert found["wasserstein"].confirms
    (confirmed,) = [t for t in adjust(list(found.values()), 0.05) if t.decisive]
    assert confirmed.drifted  # half a standard deviation: >= 0.1, and significant


def test_a_distance_over_its_threshold_drifts_only_when_significant() -> None:
    def distance(p: float) -> DriftTest:
        return DriftTest("x", "", "wasserstein", 0.15, 0.1, p, True, True, 1500, 60, confirms=True)

    noisy, real = adjust([distance(0.4), distance(0.0001)], 0.05)
    assert (noisy.drifted, real.drifted) == (False, True)
    small = DriftTest(
        "x", "", "wasserstein", 0.05, 0.1, 0.0, False, True, 1500, 5000, confirms=True
    )
    assert not adjust([small], 0.05)[0].drifted  # significant, but below Evidently's threshold


def test_few_distinct_numeric_values_are_tested_as_categories() -> None:
    ref = [0.0, 1.0] * 100
    cur = [0.0] * 150 + [1.0] * 50
    found = by_statistic(drift_of(ref, cur))
    assert set(found) == {"z", "psi"}
    assert found["z"].p_value == pytest.approx(
        stats.z_test_binary({0.0: 100, 1.0: 100}, {0.0: 150, 1.0: 50}).p_value
    )


def test_categorical_methods_follow_the_reference_size_and_the_category_count() -> None:
    def found(ref: dict[str, int], cur: dict[str, int]) -> DriftTest:
        reference = merge_reference([window(0, categories={"finish_reason": ref})], "ref")
        current = window(1, categories={"finish_reason": cur})
        (test,) = window_tests(current, reference, DriftConfig(features=["finish_reason"]))
        return test

    assert found({"stop": 90, "length": 10}, {"stop": 80, "length": 20}).statistic == "z"
    three = found({"stop": 80, "length": 10, "error": 10}, {"stop": 60, "length": 30, "error": 10})
    assert three.statistic == "chisquare" and three.p_value is not None
    big = found({"stop": 1800, "length": 200}, {"stop": 60, "length": 40})
    assert big.statistic == "jensenshannon"
    assert big.value == pytest.approx(
        stats.jensen_shannon({"stop": 1800, "length": 200}, {"stop": 60, "length": 40})
    )


def test_per_feature_method_and_threshold_override_the_default() -> None:
    rng = np.random.default_rng(RNG_SEED)
    ref, cur = rng.normal(0, 1, 500).tolist(), rng.normal(0, 1, 200).tolist()
    found = drift_of(ref, cur, methods={"latency_ms": "wasserstein"}, thresholds={"latency_ms": 9})
    main = by_statistic(found)["wasserstein"]
    assert main.decisive and main.threshold == 9 and not main.drifted
    only_psi = drift_of(ref, cur, methods={"latency_ms": "psi"})
    assert [(t.statistic, t.decisive) for t in only_psi] == [("psi", True)]
    with pytest.raises(ValueError, match="unknown drift method"):
        check_config(DriftConfig(methods={"latency_ms": "magic"}))


def test_too_little_data_on_either_side_is_not_tested() -> None:
    assert drift_of([1.0, 2.0] * 40, [1.0, 2.0, 3.0] * 20) == []  # 80 < min_reference 100
    assert drift_of([1.0, 2.0, 3.0] * 50, [1.0] * 10) == []  # 10 < min_current 30


def test_embedding_drift_is_the_centroid_cosine_distance() -> None:
    reference = merge_reference([window(0, embedding_sum=[100.0, 0.0], embedded=100)], "ref")
    same = window(1, embedding_sum=[50.0, 1.0], embedded=50)
    turned = window(1, embedding_sum=[30.0, 40.0], embedded=50)
    config = DriftConfig(features=["embedding"])
    (quiet,) = window_tests(same, reference, config)
    (moved,) = window_tests(turned, reference, config)
    assert quiet.statistic == "cosine" and not quiet.drifted
    assert moved.value == pytest.approx(1 - 0.6) and moved.drifted
    assert window_tests(window(1, embedding_sum=[1.0, 1.0], embedded=5), reference, config) == []


def test_benjamini_hochberg_adjusts_the_window_s_p_values_together() -> None:
    def test(p: float, name: str) -> DriftTest:
        return DriftTest(name, "", "ks", 0.1, 0.05, p, p <= 0.05, True, 100, 100)

    raw = [0.001, 0.03, 0.04, 0.2]
    tests = [test(p, f"f{i}") for i, p in enumerate(raw)]
    tests.append(DriftTest("w", "", "wasserstein", 0.5, 0.1, None, True, True, 2000, 100))
    adjusted = adjust(tests, 0.05)
    expected = benjamini_hochberg(raw, 0.05).p_values
    assert [t.p_adjusted for t in adjusted[:4]] == list(expected)
    # 0.03 and 0.04 drift alone, not after the adjustment (0.053): BH was applied.
    assert [t.drifted for t in adjusted] == [True, False, False, False, True]
    assert adjusted[4].p_adjusted is None


# --- the embedding sample's MMD test ---------------------------------------------------------


def embedding_windows(
    shift: float, scale: float = 1.0, seed: int = 11, n: int = 200
) -> tuple[Reference, QualityWindow]:
    rng = np.random.default_rng(seed)
    history = [simulated(rng, i, n=n) for i in range(3)]
    current = simulated(rng, 3, n=n, embedding_shift=shift, embedding_scale=scale)
    return merge_reference(history, "ref"), current


def test_the_embedding_samples_are_tested_by_mmd_and_the_centroids_reported_beside() -> None:
    reference, current = embedding_windows(0.0)
    assert len(reference.embedding_sample) == 3 * 32  # bottom-k of the three windows' samples
    config = DriftConfig(features=["embedding"])
    mmd, cosine = window_tests(current, reference, config)
    assert (mmd.feature, mmd.statistic, mmd.decisive, mmd.threshold) == (
        "embedding",
        "mmd",
        True,
        config.fdr,
    )
    assert (mmd.reference_size, mmd.current_size) == (96, 32)
    assert mmd.p_value is not None and mmd.p_value > config.fdr and not mmd.drifted
    assert (cosine.statistic, cosine.decisive, cosine.p_value) == ("cosine", False, None)
    # Seeded by the window: evaluated again, the same p-value.
    assert window_tests(current, reference, config)[0] == mmd
    assert mmd_seed(current) != mmd_seed(current.model_copy(update={"segment": "locale=de"}))


@pytest.mark.parametrize(("shift", "scale"), [(3.0, 1.0), (0.0, 2.5)])
def test_a_seeded_shift_of_the_embeddings_is_detected_by_mmd(shift: float, scale: float) -> None:
    reference, current = embedding_windows(shift, scale)
    mmd, cosine = window_tests(current, reference, DriftConfig(features=["embedding"]))
    assert mmd.statistic == "mmd" and mmd.drifted
    assert mmd.p_value is not None and mmd.p_value < 0.01
    if scale != 1.0:  # a wider spread around the same centroid: the cosine distance misses it
        assert not cosine.drifted


def test_mmd_needs_enough_vectors_on_both_sides_else_the_centroids_decide() -> None:
    reference, current = embedding_windows(0.0)
    config = DriftConfig(features=["embedding"])
    few = current.model_copy(
        update={
            "embedding_sample": current.embedding_sample[: MMD_MIN_CURRENT - 1],
            "embedding_sample_hashes": current.embedding_sample_hashes[: MMD_MIN_CURRENT - 1],
        }
    )
    assert [(t.statistic, t.decisive) for t in window_tests(few, reference, config)] == [
        ("cosine", True)
    ]
    small = replace(reference, embedding_sample=reference.embedding_sample[: MMD_MIN_REFERENCE - 1])
    assert [t.statistic for t in window_tests(current, small, config)] == ["cosine"]
    assert len(window_tests(current, small, config)) == 1
    unsampled = replace(reference, embedding_sample=())
    assert [t.statistic for t in window_tests(current, unsampled, config)] == ["cosine"]
    other_model = replace(reference, embedding_sample=[[1.0, 2.0]] * 40)
    assert [t.statistic for t in window_tests(current, other_model, config)] == ["cosine"]
    cosine_only = DriftConfig(features=["embedding"], methods={"embedding": "cosine"})
    assert [t.statistic for t in window_tests(current, reference, cosine_only)] == ["cosine"]


def test_the_reference_keeps_the_bottom_k_of_its_windows_embedding_samples() -> None:
    rng = np.random.default_rng(12)
    history = [simulated(rng, i) for i in range(12)]  # 12 x 32 sampled vectors
    reference = merge_reference(history, "ref")
    assert len(reference.embedding_sample) == MAX_REFERENCE_EMBEDDINGS
    pairs = sorted(
        (h, tuple(v))
        for w in history
        for h, v in zip(w.embedding_sample_hashes, w.embedding_sample, strict=True)
    )[:MAX_REFERENCE_EMBEDDINGS]
    assert [list(v) for v in reference.embedding_sample] == [list(v) for _, v in pairs]
