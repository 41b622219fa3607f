"""Which responses a sampled tier sees: a stable hash of the request id against the rate. Pure.

The same request id is always in or always out, in every process and after a replay, so a
replayed response is sampled as it was the first time and its outputs stay idempotent. Every
tier hashes the same way, so the samples nest: at rates 0.05 and 0.2, the 5% the NER tier
reads are among the 20% the judge grades, and an analyst can set their signals side by side.
"""

from __future__ import annotations

import hashlib
import math

_SCALE = float(1 << 64)


def sample_point(request_id: str) -> float:
    """Where `request_id` falls in [0, 1): uniform over ids, the same in every process."""
    # surrogatepass: an id decoded from JSON may hold a lone surrogate; it still hashes.
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / _SCALE


def sampled(request_id: str, rate: float) -> bool:
    """Whether a tier at `rate` (a share, 0..1) sees the response to `request_id`."""
    if not math.isfinite(rate) or rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    return sample_point(request_id) < rate
