from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas.base import MAX_COST_USD, MAX_TIME, MAX_TOTAL_COST_USD
from streams.features import ResponseFeatures
from streams.windows import (
    WindowAccumulator,
    WindowKey,
    from_epoch_ms,
    percentile,
    window_start_ms,
)

T0 = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)  # a multiple of every window length used here
E0 = T0.timestamp()
GROUP = ("greet", 1, "a", "pool", "model")


def feat(rid: str, at: float = 0.0, **overrides: object) -> ResponseFeatures:
    fields: dict[str, object] = {
        "request_id": rid,
        "ts": T0 + timedelta(seconds=at),
        "prompt_name": "greet",
        "prompt_version": 1,
        "variant": "a",
        "pool": "pool",
        "model": "model",
        "finish_reason": "stop",
        "input_tokens": 10,
        "output_tokens": 4,
        "latency_ms": 100.0,
        "ttft_ms": 20.0,
        "output_chars": 8,
        "cost_usd": 0.5,
    }
    fields.update(overrides)
    return ResponseFeatures.model_validate(fields)


# --- window boundaries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset_s", "expected_s"),
    [(0.0, 0), (0.001, 0), (9.999, 0), (10.0, 10), (10.5, 10), (25.0, 20), (-0.001, -10)],
)
def test_window_start_floors_to_the_window_length(offset_s: float, expected_s: int) -> None:
    ts = T0 + timedelta(seconds=offset_s)
    assert window_start_ms(ts, 10_000) == int(E0 * 1000) + expected_s * 1000


def test_from_epoch_ms_is_utc() -> None:
    assert from_epoch_ms(int(E0 * 1000)) == T0


# --- percentiles ---------------------------------------------------------------------------


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile([], 50) == 0.0


def test_percentile_of_one_value_is_that_value() -> None:
    assert [percentile([7.0], q) for q in (0, 50, 99, 100)] == [7.0] * 4


def test_percentile_interpolates_linearly() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)


@pytest.mark.parametrize("seed", range(5))
def test_percentile_matches_numpy(seed: int) -> None:
    rng = random.Random(seed)
    values = sorted(rng.expovariate(1 / 300) for _ in range(rng.randint(1, 500)))
    for q in (0, 1, 50, 90, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


@pytest.mark.parametrize("q", [-0.1, 100.1])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], q)


# --- accumulating and emitting -------------------------------------------------------------


def test_a_window_is_not_due_before_its_end_plus_grace() -> None:
    acc = WindowAccumulator(10, grace_s=2)
    acc.add(feat("a", 1), now=E0 + 1)
    assert acc.due(E0 + 9.9) == []
    assert acc.due(E0 + 11.999) == []
    due = acc.due(E0 + 12)
    assert len(due) == 1
    key, window = due[0]
    assert key == WindowKey(int(E0 * 1000), GROUP)
    assert window.window_start == T0
    assert window.window_end == T0 + timedelta(seconds=10)
    assert window.ts == window.window_end


def test_emitted_window_is_not_emitted_again_without_new_responses() -> None:
    acc = WindowAccumulator(10)
    acc.add(feat("a", 1), now=E0 + 1)
    assert len(acc.due(E0 + 10)) == 1
    assert acc.due(E0 + 11) == []


def test_aggregate_counts_sums_and_percentiles() -> None:
    acc = WindowAccumulator(10)
    latencies = [100.0, 200.0, 300.0, 400.0, 500.0]
    for i, latency in enumerate(latencies):
        acc.add(
            feat(f"r{i}", i, latency_ms=latency, ttft_ms=latency / 10, output_chars=10 * (i + 1)),
            now=E0 + i,
        )
    acc.add(
        feat(
            "err",
            5,
            is_error=True,
            error_kind="engine_error",
            finish_reason="error",
            output_tokens=0,
            latency_ms=9999.0,
            output_chars=0,
            cost_usd=0.0,
        ),
        now=E0 + 5,
    )
    acc.add(feat("long", 6, finish_reason="length", latency_ms=600.0, ttft_ms=60.0), now=E0 + 6)
    [(_, w)] = acc.due(E0 + 10)
    assert w.requests == 7
    assert w.errors == 1
    assert w.input_tokens == 70
    assert w.output_tokens == 24
    assert w.cost_usd == pytest.approx(3.0)
    ok_latencies = [*latencies, 600.0]  # the error is left out of the latency percentiles
    assert w.latency_p50_ms == pytest.approx(float(np.percentile(ok_latencies, 50)))
    assert w.latency_p95_ms == pytest.approx(float(np.percentile(ok_latencies, 95)))
    assert w.latency_p99_ms == pytest.approx(float(np.percentile(ok_latencies, 99)))
    ttfts = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert w.ttft_p50_ms == pytest.approx(float(np.percentile(ttfts, 50)))
    assert w.ttft_p95_ms == pytest.approx(float(np.percentile(ttfts, 95)))
    assert w.output_chars_mean == pytest.approx((10 + 20 + 30 + 40 + 50 + 8) / 6)
    assert w.finish_reasons == {"error": 1, "length": 1, "stop": 5}
    assert (w.prompt_name, w.prompt_version, w.variant, w.pool, w.model) == GROUP


def test_ttft_ignores_responses_without_output_tokens() -> None:
    acc = WindowAccumulator(10)
    acc.add(feat("a", 1, ttft_ms=50.0), now=E0)
    acc.add(feat("b", 2, ttft_ms=0.0, output_tokens=0, finish_reason="abort"), now=E0)
    [(_, w)] = acc.due(E0 + 10)
    assert w.ttft_p50_ms == 50.0
    assert w.latency_p50_ms == 100.0


def test_only_errors_gives_zero_latencies_and_mean() -> None:
    acc = WindowAccumulator(10)
    acc.add(feat("a", 1, is_error=True, finish_reason="error"), now=E0)
    [(_, w)] = acc.due(E0 + 10)
    assert (w.requests, w.errors) == (1, 1)
    assert (w.latency_p50_ms, w.ttft_p95_ms, w.output_chars_mean) == (0.0, 0.0, 0.0)


def test_groups_and_windows_are_separate() -> None:
    acc = WindowAccumulator(10)
    acc.add(feat("a", 1), now=E0)
    acc.add(feat("b", 2, variant="b"), now=E0)
    acc.add(feat("c", 11), now=E0)
    acc.add(feat("d", 9.999), now=E0)
    due = acc.due(E0 + 20)
    counts = {(k.start_ms - int(E0 * 1000), k.group[2]): w.requests for k, w in due}
    assert counts == {(0, "a"): 2, (0, "b"): 1, (10_000, "a"): 1}
    assert [k for k, _ in due] == sorted(k for k, _ in due)  # oldest first


def test_a_response_seen_twice_counts_once() -> None:
    acc = WindowAccumulator(10)
    assert acc.add(feat("a", 1), now=E0) is not None
    assert acc.add(feat("b", 2), now=E0) is not None
    assert acc.add(feat("a", 1), now=E0) is None  # a replay: same request id, same window
    [(_, w)] = acc.due(E0 + 10)
    assert w.requests == 2
    assert w.input_tokens == 20


def test_a_replay_after_emission_changes_nothing() -> None:
    acc = WindowAccumulator(10, retain_s=60)
    for i in range(3):
        acc.add(feat(f"r{i}", i), now=E0 + i)
    [(_, first)] = acc.due(E0 + 10)
    for i in range(3):
        assert acc.add(feat(f"r{i}", i), now=E0 + 11) is None
    assert acc.due(E0 + 12) == []
    assert first.requests == 3


def test_a_late_response_re_emits_a_fuller_aggregate_with_a_new_id() -> None:
    acc = WindowAccumulator(10, retain_s=60)
    acc.add(feat("a", 1), now=E0 + 1)
    [(key, first)] = acc.due(E0 + 10)
    assert acc.add(feat("late", 9), now=E0 + 15) == key
    [(key2, second)] = acc.due(E0 + 16)
    assert key2 == key
    assert (first.requests, second.requests) == (1, 2)
    assert first.event_id != second.event_id
    assert first.window_start == second.window_start


def test_the_same_aggregate_gets_the_same_event_id() -> None:
    def emit() -> str:
        acc = WindowAccumulator(10)
        for i in range(4):
            acc.add(feat(f"r{i}", i), now=E0)
        [(_, w)] = acc.due(E0 + 10)
        return w.event_id

    assert emit() == emit()


# --- retention -----------------------------------------------------------------------------


def test_retire_forgets_windows_idle_past_retention() -> None:
    acc = WindowAccumulator(10, retain_s=30)
    acc.add(feat("a", 1), now=E0 + 1)
    acc.due(E0 + 10)
    assert acc.retire(E0 + 30) == []
    assert acc.retire(E0 + 31) == [WindowKey(int(E0 * 1000), GROUP)]
    assert len(acc) == 0
    # A replay after that opens the window afresh (downstream keeps the larger aggregate).
    assert acc.add(feat("a", 1), now=E0 + 40) is not None


def test_retire_keeps_windows_not_yet_emitted() -> None:
    acc = WindowAccumulator(10, retain_s=0)
    acc.add(feat("a", 1), now=E0)
    assert acc.retire(E0 + 100) == []
    assert acc.pending() == [WindowKey(int(E0 * 1000), GROUP)]
    acc.due(E0 + 100)
    assert acc.pending() == []
    assert len(acc.retire(E0 + 100)) == 1


def test_retire_keeps_open_windows_even_when_idle() -> None:
    acc = WindowAccumulator(60, retain_s=0)
    acc.add(feat("a", 1), now=E0)
    acc.due(E0 + 61)
    acc.add(feat("b", 61), now=E0 + 61)  # next window, still open at E0 + 100
    acc.due(E0 + 100)
    assert [k.start_ms for k in acc.retire(E0 + 100)] == [int(E0 * 1000)]
    assert len(acc) == 1


def test_discard_drops_windows_without_emitting() -> None:
    acc = WindowAccumulator(10)
    key = acc.add(feat("a", 1), now=E0)
    assert key is not None
    acc.discard([key, WindowKey(0, GROUP)])
    assert acc.due(E0 + 100) == []
    assert len(acc) == 0


def test_backlog_caught_up_late_still_aggregates_whole_windows() -> None:
    # After an outage every window is past due on arrival: they are emitted as they fill,
    # and each emission is fuller than the previous one.
    acc = WindowAccumulator(10, grace_s=1, retain_s=30)
    now = E0 + 3600
    emitted: list[int] = []
    for i in range(50):
        acc.add(feat(f"r{i}", i * 0.1), now=now)
        for key in acc.needs_seed():
            acc.seed(key, [])  # nothing stored for it yet
        if i % 10 == 9:
            emitted.extend(w.requests for _, w in acc.due(now))
    assert emitted == [10, 20, 30, 40, 50]


# --- windows seen only after they closed -------------------------------------------------


def test_a_window_first_seen_after_it_closed_waits_for_its_seed() -> None:
    acc = WindowAccumulator(10, grace_s=2)
    key = acc.add(feat("late", 5), now=E0 + 30)
    assert acc.needs_seed() == [key]
    assert acc.due(E0 + 30) == []
    stored = [feat("s1", 1), feat("s2", 2, latency_ms=300.0), feat("late", 5)]
    assert key is not None
    assert acc.seed(key, stored) == 2  # "late" is counted already
    assert acc.needs_seed() == []
    [(_, w)] = acc.due(E0 + 30)
    assert w.requests == 3
    assert w.latency_p99_ms == pytest.approx(float(np.percentile([100, 100, 300], 99)))


def test_a_window_seen_while_open_needs_no_seed() -> None:
    acc = WindowAccumulator(10, grace_s=2)
    acc.add(feat("a", 5), now=E0 + 11.9)
    assert acc.needs_seed() == []
    assert len(acc.due(E0 + 12)) == 1


def test_seed_ignores_rows_of_other_windows_and_unknown_keys() -> None:
    acc = WindowAccumulator(10)
    key = acc.add(feat("a", 5), now=E0 + 100)
    assert key is not None
    other_group = feat("b", 5, variant="z")
    other_window = feat("c", 15)
    assert acc.seed(key, [other_group, other_window]) == 0
    assert acc.seed(WindowKey(0, GROUP), [feat("d", 1)]) == 0
    [(_, w)] = acc.due(E0 + 100)
    assert w.requests == 1
    # Those ids were not taken: they still count in their own windows.
    assert acc.add(other_window, now=E0 + 100) is not None


def test_a_seeded_window_stays_seeded_for_late_responses() -> None:
    acc = WindowAccumulator(10, retain_s=60)
    key = acc.add(feat("a", 5), now=E0 + 100)
    assert key is not None
    acc.seed(key, [])
    acc.due(E0 + 100)
    acc.add(feat("b", 6), now=E0 + 101)
    assert acc.needs_seed() == []
    [(_, w)] = acc.due(E0 + 101)
    assert w.requests == 2


# --- one count per request id across windows ---------------------------------------------


def test_a_result_produced_twice_with_two_timestamps_counts_once() -> None:
    acc = WindowAccumulator(10, retain_s=60)
    assert acc.add(feat("a", 5), now=E0 + 5) is not None
    assert acc.add(feat("a", 25), now=E0 + 25) is None
    windows = acc.due(E0 + 40)
    assert [w.requests for _, w in windows] == [1]


def test_forgotten_windows_release_their_request_ids() -> None:
    acc = WindowAccumulator(10, retain_s=0)
    first = acc.add(feat("a", 5), now=E0 + 5)
    acc.due(E0 + 10)
    acc.retire(E0 + 10)
    assert acc.add(feat("a", 25), now=E0 + 25) is not None
    acc.discard([WindowKey(first.start_ms + 20_000, GROUP)] if first else [])
    assert acc.add(feat("a", 25), now=E0 + 25) is not None


# --- aggregates never break their contract ----------------------------------------------


def test_sums_past_a_windows_bounds_saturate() -> None:
    # Each response within its bounds; their sum past MetricWindow's (1e6 x 1e12 USD is not
    # > 1e18 yet: a record built past validation stands for the rest of such a sum).
    acc = WindowAccumulator(10)
    acc.add(feat("a", 1, cost_usd=MAX_COST_USD), now=E0)
    acc.add(ResponseFeatures.model_construct(**{**dict(feat("b", 2)), "cost_usd": 5e18}), E0)
    [(_, w)] = acc.due(E0 + 10)
    assert w.cost_usd == MAX_TOTAL_COST_USD
    assert w.requests == 2


def test_a_window_that_cannot_be_built_is_reported_not_raised() -> None:
    # A window two days long holding the last valid time ends past the stored range.
    acc = WindowAccumulator(2 * 86_400)
    late = feat("late", 0, ts=MAX_TIME)
    key = acc.add(late, now=MAX_TIME.timestamp())
    acc.add(feat("ok", 1), now=E0 + 1)
    due = acc.due(MAX_TIME.timestamp() + 3 * 86_400)
    assert [w.window_start for _, w in due] == [from_epoch_ms(acc.key_for(feat("ok", 1)).start_ms)]
    [(failed, reason)] = acc.unbuildable()
    assert failed == key and "window_end" in reason
    assert acc.unbuildable() == [] and acc.pending() == []


@pytest.mark.parametrize(
    ("length", "grace", "retain"), [(0, 0, 0), (-1, 0, 0), (1, -1, 0), (1, 0, -1)]
)
def test_invalid_parameters_are_refused(length: float, grace: float, retain: float) -> None:
    with pytest.raises(ValueError):
        WindowAccumulator(length, grace_s=grace, retain_s=retain)
