"""Variant assignment: stable buckets, weighted picks at their edges, sticky variants."""

from collections import Counter

import pytest

from llmops.experiments.assignment import assign_variant, bucket, pick_weighted
from schemas import Experiment


def _experiment(name: str, *weights: tuple[str, float, int | None]) -> Experiment:
    return Experiment.model_validate(
        {
            "name": name,
            "prompt_name": "greet",
            "variants": [{"name": n, "weight": w, "prompt_version": v} for n, w, v in weights],
        }
    )


def test_bucket_is_stable_and_uniform() -> None:
    assert bucket("e", "user-1") == bucket("e", "user-1")
    assert bucket("e", "user-1") != bucket("f", "user-1")
    points = [bucket("e", f"u{i}") for i in range(10_000)]
    assert all(0 <= p < 1 for p in points)
    assert 0.45 < sum(p < 0.5 for p in points) / len(points) < 0.55


def test_bucket_does_not_move_between_releases() -> None:
    # A change of hash, salt or separator would move every running experiment's users.
    assert bucket("e", "user-1") == 0.9577698573010746
    assert bucket("greet-ab", "u7") == 0.16462925718802818


def test_bucket_separates_salt_from_key() -> None:
    # Without the separator, ("ab", "c") and ("a", "bc") would hash the same text.
    assert bucket("ab", "c") != bucket("a", "bc")
    assert 0 <= bucket("", "") < 1


def test_pick_weighted_edges() -> None:
    assert pick_weighted(["a", "b"], [1, 3], 0.0) == "a"
    assert pick_weighted(["a", "b"], [1, 3], 0.2499) == "a"
    assert pick_weighted(["a", "b"], [1, 3], 0.25) == "b"
    assert pick_weighted(["a", "b"], [1, 3], 0.999999) == "b"
    assert pick_weighted(["a", "b"], [0, 1], 0.0) == "b"
    with pytest.raises(ValueError):
        pick_weighted(["a"], [0], 0.5)


def test_pick_weighted_three_ways_and_the_top_edge() -> None:
    names = ["a", "b", "c"]
    assert [pick_weighted(names, [1, 1, 2], p) for p in (0.0, 0.25, 0.5, 0.75)] == [
        "a",
        "b",
        "c",
        "c",
    ]
    assert pick_weighted(names, [1, 0, 1], 0.5) == "c"  # a zero weight is never picked
    # Shares that do not sum to exactly 1.0 in floats: the top of [0, 1) is the last name.
    assert pick_weighted(names, [0.1, 0.1, 0.1], 1.0 - 2**-53) == "c"
    assert pick_weighted(["only"], [5], 0.999) == "only"


def test_pick_weighted_refuses_no_weight_at_all() -> None:
    with pytest.raises(ValueError):
        pick_weighted([], [], 0.5)
    with pytest.raises(ValueError):
        pick_weighted(["a", "b"], [0, 0], 0.0)


def test_assign_variant_sticks_splits_by_weight_and_names_the_version() -> None:
    experiment = _experiment("greet-ab", ("control", 3, 1), ("treatment", 1, 2))
    seen = Counter(assign_variant(experiment, f"u{i}") for i in range(4000))
    assert set(seen) == {("control", 1), ("treatment", 2)}
    assert 0.70 < seen[("control", 1)] / 4000 < 0.80
    assert {assign_variant(experiment, "u7") for _ in range(20)} == {("control", 1)}


def test_assign_variant_never_picks_a_zero_weight_variant() -> None:
    experiment = _experiment("off", ("control", 1, None), ("paused", 0, 2))
    assert {assign_variant(experiment, f"u{i}") for i in range(500)} == {("control", None)}


def test_experiments_split_users_independently() -> None:
    # Each experiment salts the bucket with its name: one user's side in one test says
    # nothing about its side in another.
    first = _experiment("first", ("a", 1, None), ("b", 1, None))
    second = _experiment("second", ("a", 1, None), ("b", 1, None))
    same = sum(
        assign_variant(first, f"u{i}") == assign_variant(second, f"u{i}") for i in range(2000)
    )
    assert 0.45 < same / 2000 < 0.55
