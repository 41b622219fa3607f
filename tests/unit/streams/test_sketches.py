"""KLL sketches and bottom-k samples (streams/sketches.py): they merge, and a replay picks
the same sample."""

from __future__ import annotations

import base64
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import sketches

hashes_and_values = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2**63 - 1),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    ),
    max_size=400,
)


def split(pairs: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    return [h for h, _ in pairs], [v for _, v in pairs]


@settings(max_examples=100, deadline=None)
@given(hashes_and_values, hashes_and_values, st.integers(min_value=1, max_value=300))
def test_the_bottom_k_of_a_union_is_the_bottom_k_of_the_parts_bottom_k(
    a: list[tuple[int, float]], b: list[tuple[int, float]], k: int
) -> None:
    union = sketches.bottom_k(*split(a + b), k=k)
    hashes_a, values_a = sketches.bottom_k(*split(a), k=k)
    hashes_b, values_b = sketches.bottom_k(*split(b), k=k)
    of_parts = sketches.bottom_k(hashes_a + hashes_b, values_a + values_b, k=k)
    assert of_parts == union
    assert union[0] == sorted(union[0])
    assert len(union[0]) == min(k, len(set(a + b)))


@settings(max_examples=50, deadline=None)
@given(hashes_and_values, st.randoms(use_true_random=False))
def test_the_bottom_k_does_not_depend_on_order(
    pairs: list[tuple[int, float]], rnd: random.Random
) -> None:
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    assert sketches.bottom_k(*split(pairs)) == sketches.bottom_k(*split(shuffled))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), max_size=600))
def test_the_numpy_bottom_k_agrees_with_the_plain_one(values: list[float]) -> None:
    hashes = [sketches.stable_hash(f"r{i}") for i in range(len(values))]
    assert sketches.bottom_k_arrays(
        np.asarray(hashes, dtype=np.int64), np.asarray(values, dtype=np.float64)
    ) == sketches.bottom_k(hashes, values)


def test_parallel_lists_are_required() -> None:
    with pytest.raises(ValueError, match="parallel"):
        sketches.bottom_k([1, 2], [1.0])


def test_the_hash_is_stable_and_63_bits() -> None:
    # A constant: the same in every process and release (unlike Python's hash()).
    assert sketches.stable_hash("r1") == sketches.stable_hash("r1")
    assert sketches.stable_hash("r1") != sketches.stable_hash("r2")
    values = [sketches.stable_hash(f"r{i}") for i in range(10_000)]
    assert all(0 <= v < 2**63 for v in values)
    assert max(values) > 2**62  # the whole range is used
    assert sketches.stable_hash("\udcff") >= 0  # a lone surrogate does not fail


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), max_size=500),
    st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), max_size=500),
)
def test_sketches_merge_and_survive_their_encoding(a: list[float], b: list[float]) -> None:
    merged = sketches.merge_sketches(
        sketches.decode_sketch(sketches.encode_sketch(sketches.kll_of(v))) for v in (a, b)
    )
    assert merged.n == len(a) + len(b)
    if a or b:
        values = np.asarray(a + b, dtype=np.float32)
        assert merged.get_min_value() == values.min() and merged.get_max_value() == values.max()
        assert len(sketches.quantiles_of(merged)) == len(sketches.QUANTILE_RANKS)
    else:
        assert sketches.quantiles_of(merged) == []


def test_a_small_sketch_is_the_same_bytes_in_any_order() -> None:
    values = [float(v) for v in range(150)]
    assert sketches.encode_sketch(sketches.kll_of(values)) == sketches.encode_sketch(
        sketches.kll_of(values[::-1])
    )


def test_values_that_are_not_finite_are_left_out() -> None:
    sketch = sketches.kll_of([1.0, math.nan, math.inf, -math.inf, 2.0])
    assert sketch.n == 2


def test_quantiles_stay_within_the_statistic_bound() -> None:
    assert sketches.quantiles_of(sketches.kll_of([3e38])) == [1e15] * 4


@pytest.mark.parametrize(
    "text",
    ["not base64!", base64.b64encode(b"\x00\x01garbage").decode(), "", "A" * 70_000],
)
def test_anything_but_a_sketch_is_refused_in_one_error(text: str) -> None:
    with pytest.raises(ValueError):
        sketches.decode_sketch(text)


def test_damaged_sketches_are_refused_before_the_library_reads_them() -> None:
    """The library trusts the bytes (levels that disagree with the length crash the process):
    every damaged copy either decodes to a usable sketch or is refused with a ValueError."""
    rnd = random.Random(11)
    goods = [
        sketches.kll_of([rnd.random() for _ in range(n)]).serialize() for n in (0, 1, 300, 5000)
    ]
    for _ in range(3000):
        damaged = bytearray(rnd.choice(goods))
        for _ in range(rnd.randint(1, 3)):
            if damaged:
                damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            damaged = damaged[: rnd.randrange(len(damaged) + 1)]
        try:
            sketch = sketches.decode_sketch(base64.b64encode(bytes(damaged)).decode())
        except ValueError:
            continue
        sketches.quantiles_of(sketches.merge_sketches([sketch, sketch]))


def test_the_capacity_is_the_librarys() -> None:
    for n in (201, 5000, 100_000):
        raw = sketches.kll_of([float(i) for i in range(n)]).serialize()
        levels = raw[18]
        items = (len(raw) - 20 - 4 * levels - 8) // 4
        first = int.from_bytes(raw[20:24], "little")
        assert sketches.kll_capacity(sketches.KLL_K, 8, levels) == first + items
