"""Slot allocation: sticky, weights within binomial bounds, and weight changes that move no
more users than they must."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from scipy import stats

from llmops.experiments.assignment import (
    allocation_of,
    assign_variant,
    initial_allocation,
    moved_slots,
    quotas,
    reallocate,
    sticky_key,
)
from llmops.experiments.events import VariantSpec, start, stop_variant, with_weights
from schemas import ChatMessage, Experiment, PromptRequest
from schemas.experiments import SLOTS

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
KEYS = [f"user-{i}" for i in range(100_000)]


def _started(*weights: float, name: str = "exp") -> Experiment:
    variants = [VariantSpec(f"v{i}", "greet", i + 1, w) for i, w in enumerate(weights)]
    return start(name, "greet", variants, NOW)


def _assignments(experiment: Experiment) -> list[str]:
    return [assign_variant(experiment, key)[0] for key in KEYS]


def _binomial_ok(count: int, n: int, p: float) -> bool:
    # Two-sided exact binomial test at 1e-4: a fixed-seed hash fails it only if broken.
    return bool(stats.binomtest(count, n, p).pvalue > 1e-4)


def test_quotas_sum_to_the_table_and_follow_the_weights() -> None:
    assert quotas({"a": 1, "b": 1}) == {"a": 5000, "b": 5000}
    assert quotas({"a": 1, "b": 1, "c": 1}) == {"a": 3334, "b": 3333, "c": 3333}
    assert sum(quotas({"a": 0.1, "b": 0.7, "c": 0.2}).values()) == SLOTS
    assert quotas({"a": 0, "b": 3})["a"] == 0
    with pytest.raises(ValueError):
        quotas({"a": 0, "b": 0})


def test_assignment_is_sticky_and_the_sticky_key_follows_the_kind() -> None:
    experiment = _started(50, 50)
    assert {assign_variant(experiment, "user-7") for _ in range(50)} == {
        assign_variant(experiment, "user-7")
    }
    request = PromptRequest(
        messages=[ChatMessage(role="user", content="hi")], user_id="u1", session_id="s1"
    )
    assert sticky_key(experiment, request) == "u1"
    by_session = experiment.model_copy(update={"sticky": "session"})
    assert sticky_key(by_session, request) == "s1"
    anonymous = PromptRequest(messages=[ChatMessage(role="user", content="hi")])
    assert sticky_key(by_session, anonymous) == anonymous.request_id


@pytest.mark.parametrize("weights", [(50, 50), (90, 10), (20, 30, 50), (1, 1, 1, 1)])
def test_weights_within_binomial_bounds_over_100k_keys(weights: tuple[float, ...]) -> None:
    seen = Counter(_assignments(_started(*weights)))
    total = sum(weights)
    for i, weight in enumerate(weights):
        assert _binomial_ok(seen[f"v{i}"], len(KEYS), weight / total), (seen, weights)


def test_a_broken_split_would_fail_the_bound() -> None:
    # The check itself can fail: 52% where 50% is expected over 100k keys.
    assert not _binomial_ok(52_000, 100_000, 0.5)


def _moved_keys(before: list[str], after: list[str]) -> list[tuple[str, str]]:
    return [(b, a) for b, a in zip(before, after, strict=True) if b != a]


def test_50_50_to_40_60_moves_exactly_10_percent_of_slots_and_about_10_percent_of_users() -> None:
    experiment = _started(50, 50)
    changed = with_weights(experiment, {"v0": 40, "v1": 60}, NOW, "test")
    assert moved_slots(allocation_of(experiment), allocation_of(changed)) == 1000
    moved = _moved_keys(_assignments(experiment), _assignments(changed))
    assert set(moved) == {("v0", "v1")}  # only from the shrinking variant to the growing one
    assert _binomial_ok(len(moved), len(KEYS), 0.10)
    assert changed.revision == experiment.revision + 1


def _minimum(before: dict[str, float], after: dict[str, float]) -> int:
    qb, qa = quotas(before), quotas(after)
    return sum(max(0, qb[n] - qa[n]) for n in qb)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1, "c": 2}),
        ({"a": 50, "b": 25, "c": 25}, {"a": 20, "b": 40, "c": 40}),
        ({"a": 10, "b": 80, "c": 10}, {"a": 45, "b": 10, "c": 45}),
        ({"a": 25, "b": 25, "c": 25, "d": 25}, {"a": 40, "b": 10, "c": 40, "d": 10}),
    ],
)
def test_three_and_four_variant_changes_move_exactly_the_minimum(
    before: dict[str, float], after: dict[str, float]
) -> None:
    first = initial_allocation(before)
    second = reallocate(first, after)
    assert moved_slots(first, second) == _minimum(before, after)
    assert {n: sum(e - s for s, e in r) for n, r in second.items()} == quotas(after)
    # Keys move only from variants that shrank to variants that grew.
    shrank = {n for n in before if quotas(after)[n] < quotas(before)[n]}
    grew = {n for n in before if quotas(after)[n] > quotas(before)[n]}
    owners_before = _owner_list(first)
    owners_after = _owner_list(second)
    for b, a in zip(owners_before, owners_after, strict=True):
        if b != a:
            assert b in shrank and a in grew


def _owner_list(allocation: dict[str, list[tuple[int, int]]]) -> list[str]:
    owners = [""] * SLOTS
    for name, ranges in allocation.items():
        for s, e in ranges:
            owners[s:e] = [name] * (e - s)
    assert "" not in owners
    return owners


def test_a_chain_of_changes_stays_minimal_and_compact() -> None:
    experiment = _started(50, 25, 25)
    for weights in (
        {"v0": 30, "v1": 40, "v2": 30},
        {"v0": 60, "v1": 20, "v2": 20},
        {"v0": 10, "v1": 45, "v2": 45},
        {"v0": 34, "v1": 33, "v2": 33},
    ):
        changed = with_weights(experiment, weights, NOW, "test")
        shares = {v.name: v.slot_count for v in experiment.variants}
        target = quotas(weights)
        assert moved_slots(allocation_of(experiment), allocation_of(changed)) == sum(
            max(0, shares[n] - target[n]) for n in target
        )
        assert all(len(v.slots) <= 4 for v in changed.variants)
        experiment = changed


def test_a_stopped_variant_hands_its_users_to_control_only() -> None:
    experiment = _started(40, 30, 30)
    stopped = stop_variant(experiment, "v2", NOW + timedelta(minutes=1), "guardrail")
    moved = _moved_keys(_assignments(experiment), _assignments(stopped))
    assert set(moved) == {("v2", "v0")}
    assert stopped.variant("v2").stopped and stopped.variant("v2").slot_count == 0
    assert math.isclose(stopped.shares()["v0"], 0.7)
    # Later weight changes keep the stopped variant at zero.
    later = with_weights(stopped, {"v1": 50, "v0": 50, "v2": 99}, NOW, "test")
    assert later.variant("v2").slot_count == 0
