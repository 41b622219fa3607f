"""Stable buckets: the same key lands on the same side of every weighted split. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from schemas import Experiment


def bucket(salt: str, key: str) -> float:
    """A stable number in [0, 1) for (salt, key): the same user lands on the same variant."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick_weighted(names: Sequence[str], weights: Sequence[float], point: float) -> str:
    """The name whose share of the total weight covers `point` in [0, 1)."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    edge = 0.0
    for name, weight in zip(names, weights, strict=True):
        edge += weight / total
        if point < edge:
            return name
    return names[-1]  # rounding at the top edge


def assign_variant(experiment: Experiment, sticky_key: str) -> tuple[str, int | None]:
    """The variant (and its prompt version) for a user: by weight, the same one every time."""
    names = [v.name for v in experiment.variants]
    chosen = pick_weighted(
        names, [v.weight for v in experiment.variants], bucket(experiment.name, sticky_key)
    )
    variant = next(v for v in experiment.variants if v.name == chosen)
    return variant.name, variant.prompt_version
