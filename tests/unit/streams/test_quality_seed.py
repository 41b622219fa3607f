"""Quality windows through the window accumulator, and the late-window seed: a window
re-emitted after a restart is the union of what was stored and what came again."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas import InferenceResult, Timings, Usage
from schemas.base import MAX_ATTRIBUTE_LEN
from streams import rows
from streams.backfill import (
    EMBEDDING_COLUMN,
    FEATURE_COLUMNS,
    features_from_row,
    has_embedding_column,
    stored_responses_query,
)
from streams.detectors.base import Signal
from streams.features import ResponseFeatures, extract_features, features_with_signals
from streams.quality import QualityRules
from streams.windows import WindowAccumulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
E0 = T0.timestamp()
DECLARED = ("locale", "plan")


def result(i: int, **update: object) -> InferenceResult:
    failed = i % 7 == 6
    base = InferenceResult(
        request_id=f"r{i}",
        ts=T0 + timedelta(milliseconds=100 * i),
        text="" if failed else "word " * (1 + i % 5),
        finish_reason="error" if failed else "stop",
        usage=Usage(input_tokens=3, output_tokens=0 if failed else 2),
        timings=Timings(ttft_ms=1.0 + i, total_ms=10.0 + i),
        prompt_name="greet",
        prompt_version=2,
        pool="cpu",
        model="m",
        attributes={"locale": ["de", "en", "fr"][i % 3], "plan": "pro", "user": f"u{i}"},
    )
    return base.model_copy(update=update)


def signals_of(i: int) -> list[Signal]:
    out = [
        Signal("refusal", float(i % 4 == 0), "refusal_patterns", "1"),
        Signal("pii_output", float(i % 5 == 0), "pii_regex", "1"),
        Signal("toxicity", (i % 10) / 10, "profanity_check", "1"),
        Signal("embedding", 1.0, "minilm", "1", vector=(float(i), 1.0)),
    ]
    if i % 5 == 0:
        out.append(Signal("pii_output.EMAIL", 1.0, "pii_regex", "1"))
    return out


def stored_row(i: int) -> dict[str, object]:
    """The responses row of result i as the seed query reads it back."""
    r = result(i)
    features = extract_features(r, DECLARED)
    row = rows.response_row(r, features, payload_size=1, signals=signals_of(i))
    stored = {column: row[column] for column in FEATURE_COLUMNS}
    stored["ts"] = r.ts.replace(tzinfo=None)  # ClickHouse hands back naive UTC
    stored["signals"] = row["signals"]
    stored["segments"] = {k: v for k, v in row["attributes"].items() if k in DECLARED}
    stored[EMBEDDING_COLUMN] = [float(i), 1.0]  # Array(Float32)
    return stored


def published(i: int) -> ResponseFeatures:
    """The features the worker publishes for result i (after its detectors ran)."""
    return features_with_signals(extract_features(result(i), DECLARED), signals_of(i))


def test_a_stored_response_reads_back_with_its_signals_segments_and_embedding() -> None:
    for i in range(14):
        assert features_from_row(stored_row(i)) == published(i)


def test_a_row_without_the_new_columns_reads_back_without_them() -> None:
    row = stored_row(1)
    for column in ("signals", "segments", EMBEDDING_COLUMN):
        del row[column]
    features = features_from_row(row)
    assert (features.signals, features.segments, features.embedding) == ({}, {}, None)


def test_stored_values_no_window_can_hold_are_left_out() -> None:
    row = stored_row(1)
    row["signals"] = {
        "refusal": 1.0,
        "toxicity": math.nan,
        "grounding": math.inf,
        "bad name!": 1.0,
        "relevance": 1e300,
    }
    row["segments"] = {"locale": "x" * (MAX_ATTRIBUTE_LEN + 10)}
    row[EMBEDDING_COLUMN] = [1.0, math.nan]
    features = features_from_row(row)
    assert features.signals == {"refusal": 1.0, "relevance": 1e15}
    assert features.segments == {"locale": "x" * MAX_ATTRIBUTE_LEN}
    assert features.embedding is None
    row[EMBEDDING_COLUMN] = []
    assert features_from_row(row).embedding is None


def test_the_seed_query_reads_signals_declared_segments_and_the_embedding_if_stored() -> None:
    acc = WindowAccumulator(10)
    key = acc.key_for(published(1))
    sql, params = stored_responses_query([key], acc.length_ms, DECLARED)
    assert "signals" in sql and "mapFilter" in sql and EMBEDDING_COLUMN not in sql
    assert params["segment_attributes"] == list(DECLARED)
    assert all(f"{{{name}:" in sql for name in params)
    sql, _ = stored_responses_query([key], acc.length_ms, DECLARED, with_embedding=True)
    assert f", {EMBEDDING_COLUMN} FROM" in sql
    assert has_embedding_column([{"found": 1}])
    assert not has_embedding_column([{"found": 0}]) and not has_embedding_column([])


def test_due_windows_carry_their_quality_with_their_metrics() -> None:
    acc = WindowAccumulator(10, segment_max_values=2, quality_rules=QualityRules(0.55, 1.0))
    for i in range(14):
        acc.add(published(i), now=E0)
    assert acc.due_windows(E0 + 5) == []
    [due] = acc.due_windows(E0 + 11)
    assert due.metric.requests == 14
    by_segment = {q.segment: q for q in due.quality}
    whole = by_segment[""]
    assert (whole.responses, whole.errors) == (14, 2)
    answers = [i for i in range(14) if i % 7 != 6]
    assert whole.rate_totals["refusal"] == len(answers)
    assert whole.rate_hits["refusal"] == sum(1 for i in answers if i % 4 == 0)
    assert whole.rate_hits["toxic"] == sum(1 for i in answers if i % 10 >= 6)
    assert whole.rate_hits["pii_output.EMAIL"] == sum(1 for i in answers if i % 5 == 0)
    assert whole.embedded == 14 and whole.embedding_sum == [float(sum(range(14))), 14.0]
    # locale has three values and room for two: one of them is "(other)".
    assert sum(q.responses for s, q in by_segment.items() if s.startswith("locale=")) == 14
    assert "locale=(other)" in by_segment
    assert by_segment["plan=pro"].responses == 14
    assert all(q.window_start == due.metric.window_start for q in due.quality)
    assert acc.due(E0 + 12) == []  # emitted: nothing due until a late response comes


def test_a_window_rebuilt_after_a_restart_is_the_union_not_a_part() -> None:
    """The first worker counted all 14 responses and stored them; after a restart the
    features of 6 come again, late: the window is seeded from the stored rows and its
    quality rows are the same as the first emission's, field for field."""
    first = WindowAccumulator(10)
    for i in range(14):
        first.add(published(i), now=E0)
    [before] = first.due_windows(E0 + 11)

    restarted = WindowAccumulator(10)
    for i in range(8, 14):
        restarted.add(published(i), now=E0 + 60)
    [key] = restarted.needs_seed()
    assert restarted.due_windows(E0 + 60) == []
    stored = [features_from_row(stored_row(i)) for i in range(14)]
    assert restarted.seed(key, stored) == 8
    [after] = restarted.due_windows(E0 + 60)
    assert after.metric == before.metric
    assert after.quality == before.quality


def test_a_rebuilt_window_has_the_same_embedding_sample_whatever_the_float32_rounding() -> None:
    """The live embeddings need not be float32 values; the store keeps Array(Float32): the
    window's embedding sample is float32 either way, so the seeded window's equals the
    first emission's, hash for hash and value for value."""
    vectors = {i: [0.1 * i + 1e-9, 1.0 / (i + 3)] for i in range(14)}

    def live(i: int) -> ResponseFeatures:
        return published(i).model_copy(update={"embedding": vectors[i]})

    def stored(i: int) -> ResponseFeatures:
        row = stored_row(i)
        row[EMBEDDING_COLUMN] = [float(v) for v in np.asarray(vectors[i], dtype=np.float32)]
        return features_from_row(row)

    first = WindowAccumulator(10)
    for i in range(14):
        first.add(live(i), now=E0)
    [before] = first.due_windows(E0 + 11)
    restarted = WindowAccumulator(10)
    for i in range(8, 14):
        restarted.add(live(i), now=E0 + 60)
    [key] = restarted.needs_seed()
    restarted.seed(key, [stored(i) for i in range(14)])
    [after] = restarted.due_windows(E0 + 60)
    for a, b in zip(before.quality, after.quality, strict=True):
        assert a.segment == b.segment and a.embedded == b.embedded
        assert a.embedding_sample_hashes == b.embedding_sample_hashes
        assert a.embedding_sample == b.embedding_sample and len(a.embedding_sample) > 0
    # float32 values, not the live ones (which float32 does not hold exactly).
    sampled = [v for vector in before.quality[0].embedding_sample for v in vector]
    assert all(v == float(np.float32(v)) for v in sampled)
    assert not any(v == float(np.float32(v)) for v in vectors[4])


@pytest.mark.parametrize("bad", [0, -1])
def test_segment_max_values_is_at_least_one(bad: int) -> None:
    with pytest.raises(ValueError, match="segment_max_values"):
        WindowAccumulator(10, segment_max_values=bad)
