"""QualityWindows for the monitor's tests: built directly, from fixed numbers or a seeded
numpy generator (what the quality worker would emit for such responses)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from schemas import QualityWindow
from schemas.monitoring import MAX_EMBEDDING_SAMPLE
from streams.sketches import stable_hash

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW_S = 60
GROUP = {"prompt_name": "support", "prompt_version": 3, "variant": "a", "pool": "cpu", "model": "m"}


def at(index: int) -> datetime:
    return T0 + timedelta(seconds=WINDOW_S * index)


def window(
    index: int,
    *,
    segment: str = "",
    responses: int = 100,
    rates: Mapping[str, tuple[int, int]] | None = None,
    sample: Mapping[str, Sequence[float]] | None = None,
    categories: Mapping[str, Mapping[str, int]] | None = None,
    embedding_sum: Sequence[float] = (),
    embedded: int = 0,
    embedding_sample: Sequence[Sequence[float]] = (),
    embedding_sample_hashes: Sequence[int] = (),
    **group: object,
) -> QualityWindow:
    rates = rates or {}
    return QualityWindow(
        window_start=at(index),
        window_end=at(index + 1),
        ts=at(index + 1),
        **{**GROUP, **group},  # type: ignore[arg-type]
        segment=segment,
        responses=responses,
        errors=rates.get("error", (0, 0))[0],
        rate_hits={name: hits for name, (hits, _) in rates.items()},
        rate_totals={name: total for name, (_, total) in rates.items()},
        sample={name: list(values) for name, values in (sample or {}).items()},
        categories={name: dict(counts) for name, counts in (categories or {}).items()},
        embedding_sum=list(embedding_sum),
        embedded=embedded,
        embedding_sample=[list(v) for v in embedding_sample],
        embedding_sample_hashes=list(embedding_sample_hashes),
    )


def embedding_sample(
    embeddings: np.ndarray, index: int, segment: str = ""
) -> tuple[list[list[float]], list[int]]:
    """What the quality worker keeps of these embeddings: the bottom-32 by a stable hash of
    each response's id (here its window, segment and position), as float32 values."""
    hashes = [stable_hash(f"{index}|{segment}|{j}") for j in range(len(embeddings))]
    chosen = sorted(range(len(embeddings)), key=hashes.__getitem__)[:MAX_EMBEDDING_SAMPLE]
    rounded = embeddings.astype(np.float32).astype(np.float64)
    return [rounded[j].tolist() for j in chosen], [hashes[j] for j in chosen]


DIRECTION = np.linspace(1.0, 2.0, 8)


def simulated(
    rng: np.random.Generator,
    index: int,
    *,
    n: int = 200,
    segment: str = "",
    refusal: float = 0.05,
    pii: float = 0.002,
    error: float = 0.01,
    latency_shift: float = 0.0,
    chars_scale: float = 1.0,
    length_share: float = 0.1,
    embedding_shift: float = 0.0,
    embedding_scale: float = 1.0,
    sampled: bool = True,
    **group: object,
) -> QualityWindow:
    """One window of `n` responses drawn from fixed distributions (shifted on request)."""
    latency = rng.lognormal(np.log(400.0) + latency_shift, 0.3, n)
    chars = np.round(rng.gamma(4.0, 80.0 * chars_scale, n))
    toxicity = rng.beta(1.0, 30.0, n)
    lengths = int(rng.binomial(n, length_share))
    noise = rng.normal(0.0, 1.0, (n, DIRECTION.size))
    noise[:, 1:] *= embedding_scale  # a change of spread: the centroid stays put
    embeddings = DIRECTION + noise
    embeddings[:, 0] += embedding_shift
    vectors, hashes = embedding_sample(embeddings, index, segment) if sampled else ([], [])
    return window(
        index,
        segment=segment,
        responses=n,
        rates={
            "refusal": (int(rng.binomial(n, refusal)), n),
            "pii_output": (int(rng.binomial(n, pii)), n),
            "toxic": (0, n),
            "error": (int(rng.binomial(n, error)), n),
        },
        sample={
            "latency_ms": latency[:512].tolist(),
            "output_chars": chars[:512].tolist(),
            "toxicity": toxicity[:512].tolist(),
        },
        categories={"finish_reason": {"stop": n - lengths, "length": lengths}},
        embedding_sum=embeddings.sum(axis=0).tolist(),
        embedded=n,
        embedding_sample=vectors,
        embedding_sample_hashes=hashes,
        **group,
    )
