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
    """A sketch from its base64; ValueError for anything that is not one."""
    if len(text) > MAX_SKETCH_BYTES:
        raise ValueError(f"a sketch of {len(text)} characters is past {MAX_SKETCH_BYTES}")
    try:
        raw = base64.b64decode(text, validate=True)
        return kll_floats_sketch.deserialize(raw)
    except (binascii.Error, RuntimeError, ValueError) as error:
        raise ValueError(f"not a KLL floats sketch: {error}") from None


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
