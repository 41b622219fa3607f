"""Mergeable summaries of a window's values: KLL quantile sketches and bottom-k samples. Pure.

A KLL sketch (Apache DataSketches `kll_floats_sketch`, k=200: normalized rank error about
1.3%) of the values of two windows merges into the sketch of their union, within that
error, so an hour's or a pool's quantiles are read from merged sketches, never averaged.
Sketches travel as base64 of DataSketches' own serialization, readable from Java, C++ and
Python alike. Above k values the library's compaction flips a random coin: two builds of
the same values agree within the error, not byte for byte; up to k values (sorted first
here) a build is exact and the same every time.

A bottom-k sample keeps the values of the k responses whose request-id hash is smallest: a
uniform sample that does not depend on arrival order (a replay picks the same), and the
bottom-k of a union is the bottom-k of the parts' bottom-k, so samples merge exactly. The
hash is kept with each value for that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import itertools
import struct
from collections.abc import Iterable, Sequence

import numpy as np
from datasketches import kll_floats_sketch

from schemas.base import MAX_STATISTIC
from schemas.monitoring import MAX_SKETCH_BYTES

KLL_K = 200
# The quantiles a window reports of each distribution, read from its sketch.
QUANTILE_RANKS: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
SAMPLE_K = 256
# 63 bits: the hash fits a signed 64-bit integer in any language reading the JSON or column.
HASH_BITS = 63


def stable_hash(text: str) -> int:
    """A 63-bit hash of `text`, the same in every process and run (unlike `hash()`)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - HASH_BITS)


def _clamp(value: float) -> float:
    return max(-MAX_STATISTIC, min(MAX_STATISTIC, value))


def kll_of(values: Sequence[float] | np.ndarray) -> kll_floats_sketch:
    """A KLL sketch of the finite `values` (sorted first: a small sketch is then the same
    bytes whatever order the values came in)."""
    sketch = kll_floats_sketch(KLL_K)
    array = np.asarray(values, dtype=np.float64)
    finite = np.sort(array[np.isfinite(array)]).astype(np.float32)
    if len(finite):
        sketch.update(finite)
    return sketch


def encode_sketch(sketch: kll_floats_sketch) -> str:
    return base64.b64encode(sketch.serialize()).decode("ascii")


def decode_sketch(text: str) -> kll_floats_sketch:
    """A sketch from its base64; ValueError for anything that is not one.

    The bytes are checked against the format first: the library trusts them, and bytes
    whose levels disagree with their length crash the process (measured: a segfault)."""
    if len(text) > MAX_SKETCH_BYTES:
        raise ValueError(f"a sketch of {len(text)} characters is past {MAX_SKETCH_BYTES}")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise ValueError(f"not base64: {error}") from None
    check_kll_floats_bytes(raw)
    try:
        return kll_floats_sketch.deserialize(raw)
    except (RuntimeError, ValueError, IndexError) as error:
        raise ValueError(f"not a KLL floats sketch: {error}") from None


# DataSketches' KLL serialization (kll_sketch_impl.hpp, serial versions 1 and 2), little-endian:
# preamble ints, serial version, family (15), flags, k (u16), m (u8), unused; then nothing
# (empty), one item (single), or n (u64), min_k (u16), levels (u8), unused, the start of
# each level but the last (u32 each), min and max items, the retained items.
_KLL_FAMILY = 15
_EMPTY, _SINGLE = 1, 4
_HEADER = struct.Struct("<BBBBHBx")
_FULL = struct.Struct("<QHBx")
_MAX_LEVELS = 61
_POWERS_OF_3: list[int] = [3**i for i in range(31)]


def _level_capacity_aux(k: int, depth: int) -> int:
    if depth <= 30:
        scaled: int = ((2 * k) << depth) // _POWERS_OF_3[depth]
        return (scaled + 1) >> 1
    half = depth // 2
    return _level_capacity_aux(_level_capacity_aux(k, half), depth - half)


def kll_capacity(k: int, m: int, levels: int) -> int:
    """Items a KLL sketch of `levels` levels holds (kll_helper::compute_total_capacity)."""
    return sum(max(m, _level_capacity_aux(k, levels - h - 1)) for h in range(levels))


def check_kll_floats_bytes(raw: bytes) -> None:
    """ValueError unless `raw` is a well-formed serialized kll_floats_sketch."""
    if len(raw) < _HEADER.size:
        raise ValueError("not a KLL floats sketch: too short")
    preamble, version, family, flags, k, m = _HEADER.unpack_from(raw)
    if family != _KLL_FAMILY or not 2 <= m <= 8 or k < m:
        raise ValueError("not a KLL floats sketch: bad header")
    if flags & _EMPTY:
        if (preamble, version, len(raw)) != (2, 1, _HEADER.size):
            raise ValueError("not a KLL floats sketch: bad empty sketch")
        return
    if flags & _SINGLE:
        if (preamble, version, len(raw)) != (2, 2, _HEADER.size + 4):
            raise ValueError("not a KLL floats sketch: bad single-item sketch")
        _check_items(raw, _HEADER.size, 1)
        return
    if (preamble, version) != (5, 1) or len(raw) < _HEADER.size + _FULL.size + 4:
        raise ValueError("not a KLL floats sketch: bad preamble")
    n, min_k, num_levels = _FULL.unpack_from(raw, _HEADER.size)
    if not 1 <= num_levels <= _MAX_LEVELS or not m <= min_k <= k:
        raise ValueError("not a KLL floats sketch: bad levels")
    offset = _HEADER.size + _FULL.size
    if len(raw) < offset + 4 * num_levels:
        raise ValueError("not a KLL floats sketch: truncated")
    capacity = kll_capacity(k, m, num_levels)
    levels = [*struct.unpack_from(f"<{num_levels}I", raw, offset), capacity]
    if any(low > high for low, high in itertools.pairwise(levels)):
        raise ValueError("not a KLL floats sketch: levels out of order")
    retained = capacity - levels[0]
    offset += 4 * num_levels
    if len(raw) != offset + 4 * (2 + retained):
        raise ValueError("not a KLL floats sketch: its length disagrees with its levels")
    weight = sum((levels[h + 1] - levels[h]) << h for h in range(num_levels))
    if weight != n or retained == 0:
        raise ValueError("not a KLL floats sketch: its count disagrees with its items")
    _check_items(raw, offset, 2 + retained)


def _check_items(raw: bytes, offset: int, count: int) -> None:
    items = np.frombuffer(raw, dtype="<f4", count=count, offset=offset)
    if not np.isfinite(items).all():
        raise ValueError("not a KLL floats sketch: an item is not finite")


def merge_sketches(sketches: Iterable[kll_floats_sketch]) -> kll_floats_sketch:
    merged = kll_floats_sketch(KLL_K)
    for sketch in sketches:
        merged.merge(sketch)
    return merged


def quantiles_of(sketch: kll_floats_sketch) -> list[float]:
    """[p50, p90, p95, p99] of the sketch; [] when it is empty."""
    if sketch.is_empty():
        return []
    return [_clamp(float(q)) for q in sketch.get_quantiles(list(QUANTILE_RANKS))]


def bottom_k(
    hashes: Sequence[int], values: Sequence[float], k: int = SAMPLE_K
) -> tuple[list[int], list[float]]:
    """The (hash, value) pairs of the k smallest hashes, ascending, as two parallel lists.

    A pair seen twice (the same response in two parts) counts once; ties of hash (2^-63)
    are broken by value, so the result never depends on the input's order."""
    if len(hashes) != len(values):
        raise ValueError("hashes and values must be parallel")
    pairs = heapq.nsmallest(k, set(zip(hashes, values, strict=True)))
    return [h for h, _ in pairs], [v for _, v in pairs]


def bottom_k_arrays(
    hashes: np.ndarray, values: np.ndarray, k: int = SAMPLE_K
) -> tuple[list[int], list[float]]:
    """`bottom_k` of one window's own values (distinct hashes: one response each), in numpy."""
    if len(hashes) != len(values):
        raise ValueError("hashes and values must be parallel")
    if len(hashes) > k:
        chosen = np.argpartition(hashes, k - 1)[:k]
        hashes, values = hashes[chosen], values[chosen]
    order = np.lexsort((values, hashes))
    return [int(h) for h in hashes[order]], [float(v) for v in values[order]]
