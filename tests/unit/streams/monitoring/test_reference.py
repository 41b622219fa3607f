from __future__ import annotations

from llmops.monitoring_config import ReferenceConfig
from streams.monitoring.reference import (
    MAX_REFERENCE_WINDOWS,
    ReferenceSeries,
    merge_reference,
    reference_query,
    series_of,
    window_from_row,
)
from tests.unit.streams.monitoring.kit import at, window


def test_merge_adds_counts_pools_samples_and_sums_embeddings() -> None:
    a = window(
        0,
        responses=10,
        rates={"refusal": (1, 10)},
        sample={"latency_ms": [1.0, 2.0]},
        categories={"finish_reason": {"stop": 9, "length": 1}},
        embedding_sum=[1.0, 0.0],
        embedded=2,
    )
    b = window(
        1,
        responses=5,
        rates={"refusal": (2, 5)},
        sample={"latency_ms": [3.0]},
        categories={"finish_reason": {"stop": 5}},
        embedding_sum=[0.0, 3.0],
        embedded=3,
    )
    merged = merge_reference([a, b], "x")
    assert merged.responses == 15 and merged.windows == 2
    assert (merged.rate_hits["refusal"], merged.rate_totals["refusal"]) == (3, 15)
    assert list(merged.sample["latency_ms"]) == [1.0, 2.0, 3.0]
    assert merged.categories["finish_reason"] == {"stop": 14, "length": 1}
    assert (list(merged.embedding_sum), merged.embedded) == ([1.0, 3.0], 5)


def test_baseline_is_the_first_windows_until_n_responses_and_then_fixed() -> None:
    series = ReferenceSeries(ReferenceConfig(mode="baseline", baseline_responses=250))
    assert series.reference(window(0)) is None
    for i in range(2):
        series.passed(window(i, responses=100))
    # 200 < 250: not complete, the next window is not tested (it joins the baseline)
    assert series.reference(window(2)) is None
    series.passed(window(2, responses=100))
    reference = series.reference(window(3))
    assert reference is not None and reference.responses == 300 and reference.windows == 3
    assert reference.description == "baseline:first 300 responses"
    for i in range(3, 8):
        series.passed(window(i, responses=100, rates={"refusal": (90, 100)}))
    later = series.reference(window(9))
    assert later is not None and later.windows == 3 and "refusal" not in later.rate_totals
    # A window inside the baseline is never compared with it.
    assert series.reference(window(1)) is None


def test_rolling_is_the_windows_just_before_the_current_one() -> None:
    series = ReferenceSeries(ReferenceConfig(mode="rolling", rolling_windows=3))
    for i in range(6):
        series.passed(window(i, responses=10 + i))
    reference = series.reference(window(6))
    assert reference is not None and reference.responses == 13 + 14 + 15
    # A replayed window is compared with the windows before it, not with itself.
    replay = series.reference(window(5))
    assert replay is not None and replay.responses == 12 + 13 + 14


def test_a_window_seen_again_replaces_the_earlier_one() -> None:
    series = ReferenceSeries(ReferenceConfig(mode="rolling", rolling_windows=5))
    series.passed(window(0, responses=10))
    series.passed(window(0, responses=30))
    reference = series.reference(window(1))
    assert reference is not None and reference.responses == 30


def test_pinned_takes_the_windows_in_its_range() -> None:
    config = ReferenceConfig(mode="pinned", pinned_start=at(2), pinned_end=at(4))
    series = ReferenceSeries(config)
    series.load([window(i, responses=10 * (i + 1)) for i in range(6)])
    reference = series.reference(window(9))
    assert reference is not None and reference.responses == 30 + 40
    assert reference.description.startswith("pinned:")
    # Any version of the prompt in the range counts: a new version against a known period.
    series.load([window(3, responses=5, prompt_version=2)])
    reference = series.reference(window(9, prompt_version=4))
    assert reference is not None and reference.responses == 30 + 40 + 5


def test_one_query_per_group_bounded_per_segment() -> None:
    group, _ = series_of(window(0))
    segments = ["", "locale=de"]
    for mode in ("baseline", "rolling", "pinned"):
        config = ReferenceConfig(mode=mode)  # type: ignore[arg-type]
        sql, params = reference_query(group, segments, config, at(5))
        assert "FROM quality_windows FINAL" in sql and sql.endswith("BY segment")
        assert params["segments"] == segments and params["version"] == 3
    sql, _ = reference_query(
        group, segments, ReferenceConfig(mode="rolling", rolling_windows=7), at(5)
    )
    assert sql.endswith("LIMIT 7 BY segment")
    sql, params = reference_query(group, segments, ReferenceConfig(mode="pinned"), at(5))
    assert "prompt_version = " not in sql and params["name"] == "support"
    sql, _ = reference_query(group, segments, ReferenceConfig(mode="baseline"), at(5))
    assert sql.endswith(f"LIMIT {MAX_REFERENCE_WINDOWS} BY segment")


def test_a_stored_row_becomes_the_window() -> None:
    original = window(0, rates={"refusal": (1, 9)}, sample={"latency_ms": [1.5]})
    row = {**original.model_dump(), "sketches": {"latency_ms": "AAAA"}, "inserted_at": at(3)}
    assert window_from_row(row) == original.model_copy(update={"sketches": {}})
