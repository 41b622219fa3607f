"""Quality aggregates per window and segment (streams/quality.py) on fixed inputs, and their
rollup: merging windows equals aggregating the union."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llmops.clickhouse.client import MIGRATIONS_DIR, split_statements
from llmops.monitoring_config import MonitoringSettings
from llmops.stats.proportions import wilson_interval
from schemas import QualityWindow
from schemas.base import MAX_COUNT, MAX_DURATION_MS, MAX_STATISTIC
from streams import rows, sketches
from streams.features import ResponseFeatures
from streams.quality import (
    EMBEDDING_SAMPLE_K,
    OTHER,
    QualityRules,
    WindowQuality,
    embedding_sample_k,
    merge_quality,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
START_MS = int(T0.timestamp() * 1000)
LENGTH_MS = 60_000
GROUP = ("greet", 1, "a", "pool", "model")


def feat(rid: str, **overrides: object) -> ResponseFeatures:
    fields: dict[str, object] = {
        "request_id": rid,
        "ts": T0 + timedelta(seconds=1),
        "prompt_name": "greet",
        "prompt_version": 1,
        "variant": "a",
        "pool": "pool",
        "model": "model",
        "finish_reason": "stop",
        "output_tokens": 4,
        "latency_ms": 100.0,
        "ttft_ms": 20.0,
        "output_chars": 8,
    }
    fields.update(overrides)
    return ResponseFeatures.model_validate(fields)


def error(rid: str, **overrides: object) -> ResponseFeatures:
    return feat(
        rid,
        is_error=True,
        error_kind="engine_error",
        finish_reason="error",
        output_tokens=0,
        output_chars=0,
        **overrides,
    )


def aggregate(
    features: list[ResponseFeatures],
    max_values: int = 32,
    rules: QualityRules | None = None,
    start_ms: int = START_MS,
) -> dict[str, QualityWindow]:
    """The window's QualityWindows by segment (the group of the first response)."""
    quality = WindowQuality(max_values, rules)
    for f in features:
        quality.add(f)
    group = features[0].group if features else GROUP
    return {w.segment: w for w in quality.windows(start_ms, LENGTH_MS, group)}


def planted() -> list[ResponseFeatures]:
    """Eight answers and two errors with planted signals (see the expectations below)."""
    base = {"refusal": 0.0, "pii_output": 0.0, "pii_input": 0.0}
    out = []
    for i in range(8):
        signals = dict(base, toxicity=0.1)
        if i in (0, 1):
            signals["refusal"] = 1.0
        if i == 0:
            signals.update({"pii_output": 2.0, "pii_output.EMAIL": 1.0, "pii_output.PHONE": 1.0})
        if i == 3:
            signals.update({"pii_output": 1.0, "pii_output.EMAIL": 1.0})
        if i == 1:
            signals["toxicity"] = 0.9
        if i == 2:
            signals["toxicity"] = 0.5  # at the threshold: toxic
        if i == 4:
            signals["grounding"] = 0.5
        if i == 5:
            signals["grounding"] = 1.0
        if i == 6:
            signals["json_valid"] = 0.0
        if i == 7:
            signals["json_valid"] = 1.0
        segments = {"locale": "de" if i < 5 else "en"}
        if i == 0:
            segments["plan"] = "pro"
        out.append(feat(f"r{i}", signals=signals, segments=segments, latency_ms=10.0 * (i + 1)))
    # Errors carry the detectors' signals too (of an empty output): only pii_input counts.
    out.append(error("r8", signals=base, segments={"locale": "en"}))
    out.append(error("r9", signals=dict(base, pii_input=1.0), segments={"locale": "en"}))
    return out


EXPECTED_WHOLE = {
    "error": (10, 2),
    "json_invalid": (2, 1),
    "pii_input": (10, 1),
    "pii_output": (8, 2),
    "pii_output.EMAIL": (8, 2),
    "pii_output.PHONE": (8, 1),
    "refusal": (8, 2),
    "toxic": (8, 2),
    "unsupported": (2, 1),
    # r0, r3 (PII), r1, r2 (toxic), r4 (unsupported): five of the eight answers
    "safety_flag": (8, 5),
}


def rates(window: QualityWindow) -> dict[str, tuple[int, int]]:
    assert window.rate_totals.keys() == window.rate_hits.keys()
    return {name: (window.rate_totals[name], window.rate_hits[name]) for name in window.rate_totals}


def test_rates_of_planted_signals_are_exact_with_their_wilson_interval() -> None:
    windows = aggregate(planted())
    whole = windows[""]
    assert (whole.responses, whole.errors) == (10, 2)
    assert rates(whole) == EXPECTED_WHOLE
    for name, (total, hits) in EXPECTED_WHOLE.items():
        interval = wilson_interval(hits, total, 0.95)
        assert (whole.rate_low[name], whole.rate_high[name]) == (interval.low, interval.high)
    assert whole.categories == {
        "error_kind": {"engine_error": 2},
        "finish_reason": {"error": 2, "stop": 8},
    }
    assert (whole.window_start, whole.window_end) == (T0, T0 + timedelta(minutes=1))
    assert whole.ts == whole.window_end
    assert (whole.prompt_name, whole.prompt_version, whole.variant) == ("greet", 1, "a")


def test_each_declared_segment_value_has_its_own_figures() -> None:
    windows = aggregate(planted())
    assert sorted(windows) == ["", "locale=de", "locale=en", "plan=pro"]
    de, en, pro = windows["locale=de"], windows["locale=en"], windows["plan=pro"]
    assert (de.responses, de.errors, en.responses, en.errors) == (5, 0, 5, 2)
    assert rates(de) == {
        "error": (5, 0),
        "pii_input": (5, 0),
        "pii_output": (5, 2),
        "pii_output.EMAIL": (5, 2),
        "pii_output.PHONE": (5, 1),
        "refusal": (5, 2),
        "toxic": (5, 2),
        "unsupported": (1, 1),
        "safety_flag": (5, 5),  # r0..r4 each carry one flag
    }
    assert rates(en) == {
        "error": (5, 2),
        "json_invalid": (2, 1),
        "pii_input": (5, 1),
        "pii_output": (3, 0),
        "refusal": (3, 0),
        "toxic": (3, 0),
        "unsupported": (1, 0),
        "safety_flag": (3, 0),
    }
    assert rates(pro)["refusal"] == (1, 1) and pro.responses == 1
    # Latency of answers only: r5..r7 in "en".
    assert en.sample["latency_ms"] == sorted(
        [60.0, 70.0, 80.0], key=lambda v: sketches.stable_hash(f"r{int(v / 10) - 1}")
    )


def test_thresholds_come_from_the_monitoring_settings() -> None:
    rules = QualityRules.from_monitoring(
        MonitoringSettings(toxic_threshold=0.95, unsupported_below=0.4)
    )
    whole = aggregate(planted(), rules=rules)[""]
    assert rates(whole)["toxic"] == (8, 0)
    assert rates(whole)["unsupported"] == (2, 0)


def test_quantiles_are_read_from_the_sketch_exact_below_k_values() -> None:
    values = list(range(1, 101))
    random.Random(3).shuffle(values)
    features = [feat(f"r{v}", latency_ms=float(v)) for v in values]
    whole = aggregate(features)[""]
    # Below k values the sketch holds them all: the exclusive quantile is sorted[floor(q n)].
    assert whole.quantiles["latency_ms"] == [51.0, 91.0, 96.0, 100.0]
    sketch = sketches.decode_sketch(whole.sketches["latency_ms"])
    assert sketch.n == 100
    assert set(whole.quantiles) == {"latency_ms", "ttft_ms", "output_chars", "output_tokens"}


def test_score_distributions_come_from_the_signals() -> None:
    features = [
        feat("a", signals={"toxicity": 0.2, "relevance": 0.7, "semantic_grounding": 0.1}),
        feat("b", signals={"toxicity": 0.4, "refusal_similarity": 0.3}),
        error("c", signals={"toxicity": 0.9}),  # an error's score is not an answer's
    ]
    whole = aggregate(features)[""]
    assert sorted(whole.sample["toxicity"]) == [0.2, 0.4]
    assert whole.sample["relevance"] == [0.7]
    assert whole.sample["refusal_similarity"] == [0.3]
    assert whole.sample["semantic_grounding"] == [0.1]
    assert "grounding" not in whole.quantiles and "grounding" not in whole.sketches
    # ttft of answers with output tokens only.
    no_tokens = aggregate([feat("d", output_tokens=0)])[""]
    assert "ttft_ms" not in no_tokens.sample


def test_the_sample_is_the_bottom_k_by_request_id_hash() -> None:
    features = [feat(f"r{i}", latency_ms=float(i)) for i in range(1000)]
    whole = aggregate(features)[""]
    expected = sorted((sketches.stable_hash(f"r{i}"), float(i)) for i in range(1000))[
        : sketches.SAMPLE_K
    ]
    assert whole.sample_hashes["latency_ms"] == [h for h, _ in expected]
    assert whole.sample["latency_ms"] == [v for _, v in expected]
    # The same responses in another order: the same sample.
    random.Random(1).shuffle(features)
    again = aggregate(features)[""]
    assert again.sample == whole.sample and again.sample_hashes == whole.sample_hashes


def test_embeddings_are_summed_and_counted() -> None:
    features = [
        feat("a", embedding=[1.0, 2.0, 3.0]),
        feat("b", embedding=[0.5, 0.5, 0.5], segments={"locale": "de"}),
        feat("c"),
        feat("d", embedding=[9.0, 9.0]),  # another dimension: left out
    ]
    windows = aggregate(features)
    assert windows[""].embedding_sum == [1.5, 2.5, 3.5]
    assert windows[""].embedded == 2
    assert (windows["locale=de"].embedding_sum, windows["locale=de"].embedded) == (
        [0.5, 0.5, 0.5],
        1,
    )
    none = aggregate([feat("e")])[""]
    assert (none.embedding_sum, none.embedded) == ([], 0)


def as_float32(vector: list[float]) -> list[float]:
    return [float(v) for v in np.asarray(vector, dtype=np.float32)]


def embedded_features(n: int, seed: int = 0, prefix: str = "e") -> list[ResponseFeatures]:
    rng = np.random.default_rng(seed)
    return [
        feat(
            f"{prefix}{i}",
            embedding=rng.normal(0.0, 1.0, 4).tolist(),
            segments={"locale": ["de", "en", "fr"][i % 3]},
        )
        for i in range(n)
    ]


def expected_embedding_sample(features: list[ResponseFeatures]) -> list[tuple[int, list[float]]]:
    pairs = sorted(
        (sketches.stable_hash(f.request_id), as_float32(f.embedding or []))
        for f in features
        if f.embedding
    )
    return pairs[:EMBEDDING_SAMPLE_K]


def test_the_embedding_sample_is_the_bottom_k_by_request_id_hash_in_float32() -> None:
    features = embedded_features(200)
    windows = aggregate(features)
    for segment, members in (
        ("", features),
        ("locale=de", [f for f in features if f.segments["locale"] == "de"]),
    ):
        expected = expected_embedding_sample(members)
        window = windows[segment]
        assert len(window.embedding_sample) == EMBEDDING_SAMPLE_K
        assert window.embedding_sample_hashes == [h for h, _ in expected]
        assert window.embedding_sample == [v for _, v in expected]
    # Replayed in another order (a restart's re-read): the same sample, field for field.
    random.Random(3).shuffle(features)
    again = aggregate(features)
    for segment, window in windows.items():
        assert again[segment].embedding_sample == window.embedding_sample
        assert again[segment].embedding_sample_hashes == window.embedding_sample_hashes


def test_a_few_embeddings_are_all_kept_and_other_dimensions_left_out() -> None:
    features = [
        feat("a", embedding=[0.1, 0.2, 0.3]),
        feat("b", embedding=[0.5, 0.5, 0.5]),
        feat("c"),
        feat("d", embedding=[9.0, 9.0]),  # another dimension: left out, as from the sum
        # Not finite (a record built around the contract): left out.
        feat("e").model_copy(update={"embedding": [math.nan, 1.0, 1.0]}),
    ]
    whole = aggregate(features)[""]
    expected = expected_embedding_sample(features[:2])
    assert whole.embedding_sample_hashes == [h for h, _ in expected]
    assert whole.embedding_sample == [v for _, v in expected]
    assert whole.embedding_sample != [[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]]  # float32, as stored
    none = aggregate([feat("z")])[""]
    assert (none.embedding_sample, none.embedding_sample_hashes) == ([], [])


def test_a_wider_embedding_keeps_fewer_vectors_and_still_merges_exactly() -> None:
    rng = np.random.default_rng(9)
    features = [feat(f"w{i}", embedding=rng.normal(0.0, 1.0, 1536).tolist()) for i in range(40)]
    whole = aggregate(features)[""]
    assert embedding_sample_k(1536) == 8 and embedding_sample_k(384) == EMBEDDING_SAMPLE_K
    assert embedding_sample_k(4096) == 3
    expected = expected_embedding_sample(features)[:8]
    assert whole.embedding_sample_hashes == [h for h, _ in expected]
    assert whole.embedding_sample == [v for _, v in expected]
    parts = [aggregate(features[:20])[""], aggregate(features[20:])[""]]
    assert merge_quality(parts).embedding_sample_hashes == whole.embedding_sample_hashes
    assert len(whole.model_dump_json()) < 400_000


def test_a_segment_folded_into_other_brings_its_embedding_sample() -> None:
    features = embedded_features(120)
    windows = aggregate(features, max_values=1)
    [kept] = [s for s in windows if s.startswith("locale=") and not s.endswith(OTHER)]
    other = [f for f in features if f"locale={f.segments['locale']}" != kept]
    expected = expected_embedding_sample(other)
    assert windows[f"locale={OTHER}"].embedding_sample_hashes == [h for h, _ in expected]
    assert windows[f"locale={OTHER}"].embedding_sample == [v for _, v in expected]


def test_merged_embedding_samples_are_the_bottom_k_of_the_union() -> None:
    features = embedded_features(300, seed=4)
    parts = [aggregate(features[i : i + 100]) for i in range(0, 300, 100)]
    union = aggregate(features)
    for segment, window in union.items():
        merged = merge_quality([p[segment] for p in parts])
        assert merged.embedding_sample_hashes == window.embedding_sample_hashes
        assert merged.embedding_sample == window.embedding_sample
        # A window merged with itself counts its responses once in the sample.
        twice = merge_quality([window, window])
        assert twice.embedding_sample_hashes == window.embedding_sample_hashes


def test_an_embedding_sample_must_be_parallel_and_of_one_dimension() -> None:
    window = aggregate(embedded_features(3))[""]
    with pytest.raises(ValidationError, match="parallel"):
        QualityWindow.model_validate(
            {**window.model_dump(), "embedding_sample_hashes": window.embedding_sample_hashes[1:]}
        )
    with pytest.raises(ValidationError, match="one dimension"):
        QualityWindow.model_validate(
            {
                **window.model_dump(),
                "embedding_sample": [[1.0], *window.embedding_sample[1:]],
            }
        )
    with pytest.raises(ValidationError):
        QualityWindow.model_validate(
            {
                **window.model_dump(),
                "embedding_sample": [[0.0]] * (EMBEDDING_SAMPLE_K + 1),
                "embedding_sample_hashes": list(range(EMBEDDING_SAMPLE_K + 1)),
            }
        )


def test_an_empty_window_has_no_figures() -> None:
    [whole] = WindowQuality().windows(START_MS, LENGTH_MS, GROUP)
    assert (whole.segment, whole.responses, whole.errors) == ("", 0, 0)
    assert whole.rate_totals == {} and whole.sketches == {} and whole.sample == {}
    assert whole.categories == {} and whole.embedding_sum == []


# --- segments past segment_max_values ------------------------------------------------------------


def by_rank(values: list[str], attribute: str = "locale") -> list[str]:
    return sorted(values, key=lambda v: sketches.stable_hash(f"{attribute}={v}"))


def test_values_past_the_cap_are_counted_in_other() -> None:
    values = [f"v{i}" for i in range(6)]
    features = [
        feat(f"r{i}-{v}", segments={"locale": v}) for i in range(3) for v in values
    ]  # three responses per value
    windows = aggregate(features, max_values=2)
    kept = by_rank(values)[:2]
    assert sorted(windows) == sorted(["", *(f"locale={v}" for v in kept), f"locale={OTHER}"])
    assert [windows[f"locale={v}"].responses for v in kept] == [3, 3]
    assert windows[f"locale={OTHER}"].responses == 12
    assert windows[f"locale={OTHER}"].rate_totals["error"] == 12


@settings(max_examples=30, deadline=None)
@given(st.randoms(use_true_random=False))
def test_which_values_get_a_segment_does_not_depend_on_order(rnd: random.Random) -> None:
    features = [
        feat(f"r{i}", segments={"locale": f"v{i % 7}"}, latency_ms=float(i)) for i in range(40)
    ]
    first = aggregate(features, max_values=3)
    rnd.shuffle(features)
    second = aggregate(features, max_values=3)
    assert sorted(first) == sorted(second)
    for segment, window in first.items():
        other = second[segment]
        assert (window.responses, window.rate_totals, window.sample) == (
            other.responses,
            other.rate_totals,
            other.sample,
        )
    assert sum(w.responses for s, w in first.items() if s.startswith("locale=")) == 40


def test_a_segment_folded_after_it_was_emitted_is_emitted_empty() -> None:
    low, high = by_rank(["x", "y", "z"])[:2]
    quality = WindowQuality(max_values=1)
    quality.add(feat("r1", segments={"locale": high}))
    first = {w.segment for w in quality.windows(START_MS, LENGTH_MS, GROUP)}
    assert first == {"", f"locale={high}"}
    quality.add(feat("r2", segments={"locale": low}))  # ranks before `high`: takes its place
    second = {w.segment: w for w in quality.windows(START_MS, LENGTH_MS, GROUP)}
    assert second[f"locale={high}"].responses == 0  # replaces the stored row
    assert second[f"locale={low}"].responses == 1
    assert second[f"locale={OTHER}"].responses == 1
    assert second[""].responses == 2


def test_a_value_named_other_is_counted_in_other() -> None:
    windows = aggregate([feat("r1", segments={"locale": OTHER})])
    assert windows[f"locale={OTHER}"].responses == 1


def test_segment_max_values_must_be_positive() -> None:
    with pytest.raises(ValueError, match="segment_max_values"):
        WindowQuality(0)


# --- hostile values ------------------------------------------------------------------------------


def test_nan_never_reaches_the_aggregate() -> None:
    with pytest.raises(ValidationError):
        feat("r1", signals={"toxicity": math.nan})
    with pytest.raises(ValidationError):
        feat("r1", embedding=[math.inf])
    # Built around the contract: the value is left out, neither counted nor sketched.
    sneaky = feat("r1").model_copy(update={"signals": {"toxicity": math.nan, "refusal": 1.0}})
    whole = aggregate([sneaky])[""]
    assert "toxic" not in whole.rate_totals and "toxicity" not in whole.sample
    assert rates(whole)["refusal"] == (1, 1)


def test_extreme_values_stay_within_the_contract() -> None:
    features = [
        feat("a", latency_ms=MAX_DURATION_MS, signals={"relevance": MAX_STATISTIC}),
        feat("b", latency_ms=0.0, signals={"relevance": -MAX_STATISTIC}),
        feat("c", embedding=[MAX_STATISTIC] * 4),
        feat("d", embedding=[MAX_STATISTIC] * 4),
    ]
    whole = aggregate(features)[""]
    assert all(abs(q) <= MAX_STATISTIC for qs in whole.quantiles.values() for q in qs)
    assert whole.embedding_sum == [MAX_STATISTIC] * 4  # saturated, not past the bound
    QualityWindow.model_validate(whole.model_dump())


def test_huge_counts_saturate() -> None:
    window = aggregate(planted())[""]
    huge = window.model_copy(
        update={
            "responses": MAX_COUNT,
            "errors": MAX_COUNT,
            "rate_totals": {"error": MAX_COUNT, "refusal": MAX_COUNT},
            "rate_hits": {"error": MAX_COUNT, "refusal": 7},
            "categories": {"finish_reason": {"stop": MAX_COUNT}},
        }
    )
    merged = merge_quality([huge, huge])
    assert (merged.responses, merged.errors) == (MAX_COUNT, MAX_COUNT)
    assert merged.rate_totals["error"] == MAX_COUNT == merged.rate_hits["error"]
    assert merged.rate_hits["refusal"] == 14
    assert merged.categories["finish_reason"]["stop"] == MAX_COUNT
    assert 0.0 <= merged.rate_low["refusal"] <= merged.rate_high["refusal"] <= 1.0


# --- merging ---------------------------------------------------------------------------------


signal_values = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def responses(draw: st.DrawFn) -> list[ResponseFeatures]:
    n = draw(st.integers(min_value=0, max_value=60))
    out = []
    for i in range(n):
        failed = draw(st.booleans()) and draw(st.booleans())
        signals: dict[str, float] = {"refusal": float(draw(st.booleans()))}
        signals["pii_output"] = float(draw(st.integers(0, 2)))
        if signals["pii_output"]:
            signals[f"pii_output.{draw(st.sampled_from(['EMAIL', 'PHONE']))}"] = 1.0
        if draw(st.booleans()):
            signals["toxicity"] = draw(signal_values)
        if draw(st.booleans()):
            signals["grounding"] = draw(signal_values)
        overrides: dict[str, object] = {
            "signals": signals,
            "segments": {"locale": draw(st.sampled_from(["de", "en", "fr"]))},
            "latency_ms": draw(st.floats(min_value=0.0, max_value=1e6)),
            "embedding": draw(st.none() | st.lists(signal_values, min_size=3, max_size=3)),
        }
        rid = f"{draw(st.uuids()).hex}-{i}"
        out.append(error(rid, **overrides) if failed else feat(rid, **overrides))
    return out


COMPARED = (
    "responses",
    "errors",
    "rate_totals",
    "rate_hits",
    "rate_low",
    "rate_high",
    "sample",
    "sample_hashes",
    "categories",
    "embedded",
    "embedding_sample",
    "embedding_sample_hashes",
)


def assert_same_figures(merged: QualityWindow, union: QualityWindow) -> None:
    for name in COMPARED:
        assert getattr(merged, name) == getattr(union, name), name
    assert np.allclose(merged.embedding_sum, union.embedding_sum)
    assert merged.quantiles.keys() == union.quantiles.keys()
    for name, sketch in merged.sketches.items():
        assert sketches.decode_sketch(sketch).n == sketches.decode_sketch(union.sketches[name]).n


@settings(max_examples=40, deadline=None)
@given(responses(), responses())
def test_merging_two_windows_equals_aggregating_their_union(
    first: list[ResponseFeatures], second: list[ResponseFeatures]
) -> None:
    union = aggregate(first + second)
    parts = (aggregate(first), aggregate(second))
    for segment, window in union.items():
        present = [p[segment] for p in parts if segment in p]
        assert_same_figures(merge_quality(present), window)
        # Fewer than k values: the sketches hold every value, so the quantiles are exact.
        assert merge_quality(present).quantiles == window.quantiles


def test_merged_quantiles_are_within_the_kll_error() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(4.0, 1.0, 6000)
    features = [feat(f"r{i}", latency_ms=float(v)) for i, v in enumerate(values)]
    parts = [aggregate(features[i : i + 2000])[""] for i in range(0, 6000, 2000)]
    merged = merge_quality(parts)
    union = aggregate(features)[""]
    assert_same_figures(merged, union)
    ordered = np.sort(values)
    epsilon = sketches.decode_sketch(merged.sketches["latency_ms"]).normalized_rank_error(False)
    for rank, q in zip(sketches.QUANTILE_RANKS, merged.quantiles["latency_ms"], strict=True):
        true_rank = np.searchsorted(ordered, q, side="right") / len(ordered)
        assert abs(true_rank - rank) <= 2 * epsilon + 1 / len(ordered)


def test_a_rollup_across_groups_keeps_what_they_share() -> None:
    a = aggregate([feat("a")])[""]
    later = T0 + timedelta(minutes=1, seconds=5)
    b = aggregate([feat("b", pool="other", ts=later)], start_ms=START_MS + LENGTH_MS)[""]
    merged = merge_quality([a, b])
    assert (merged.prompt_name, merged.prompt_version, merged.pool) == ("greet", 1, "")
    assert (merged.window_start, merged.window_end) == (T0, T0 + timedelta(minutes=2))
    assert merged.responses == 2
    assert merge_quality([a, b]).event_id == merge_quality([b, a]).event_id
    assert merge_quality([a]).rate_totals == a.rate_totals


def test_merging_nothing_or_different_embedding_sizes_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing"):
        merge_quality([])
    a = aggregate([feat("a", embedding=[1.0, 2.0])])[""]
    b = aggregate([feat("b", embedding=[1.0, 2.0, 3.0])])[""]
    with pytest.raises(ValueError, match="dimensions"):
        merge_quality([a, b])


def test_a_reaggregation_of_the_same_content_is_identical() -> None:
    """Event ids are stable, and below k values everything else is too: a re-emission of
    the same window replaces its row and record field for field."""
    features = planted()
    first = aggregate(features)
    random.Random(5).shuffle(features)
    second = aggregate(features)
    assert first == second


# --- the quality_windows table -------------------------------------------------------------


def test_the_row_columns_are_the_tables_and_the_records_fields() -> None:
    [statement] = split_statements((MIGRATIONS_DIR / "010_quality_windows.sql").read_text())
    body = statement[statement.index("(") + 1 : statement.rindex("ENGINE")]
    names = re.findall(r"^\s*([a-z_][a-z0-9_]*)\s+[A-Z]", body, flags=re.MULTILINE)
    added = [  # 015_embedding_sample.sql adds the embedding sample to the table
        re.fullmatch(r"ALTER TABLE quality_windows ADD COLUMN IF NOT EXISTS (\w+) .+", s).group(1)  # type: ignore[union-attr]
        for s in split_statements((MIGRATIONS_DIR / "015_embedding_sample.sql").read_text())
    ]
    assert added == ["embedding_sample", "embedding_sample_hashes"]
    assert (
        tuple(n for n in names if n != "inserted_at") + tuple(added) == rows.QUALITY_WINDOW_COLUMNS
    )
    assert set(QualityWindow.model_fields) - {"schema_version"} == set(rows.QUALITY_WINDOW_COLUMNS)
    window = aggregate(planted())[""]
    row = rows.quality_window_row(window)
    assert tuple(row) == rows.QUALITY_WINDOW_COLUMNS
    assert row["rate_hits"] == window.rate_hits and row["segment"] == ""
    assert rows.QUALITY_WINDOWS_TABLE in statement
