"""Summaries of request outcomes for the demo and the benches (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from schemas import InferenceResult


@dataclass(frozen=True)
class Outcome:
    """What an app saw for one request: the result (None when none came) and its latency."""

    request_id: str
    latency_ms: float
    result: InferenceResult | None
    error: str | None = None


@dataclass(frozen=True)
class GroupStats:
    group: str
    requests: int
    replies: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    input_tokens: int
    output_tokens: int


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> list[float]:
    if not values:
        return [0.0 for _ in qs]
    return [float(v) for v in np.percentile(np.asarray(values, dtype=float), qs)]


def summarize(group: str, outcomes: Sequence[Outcome]) -> GroupStats:
    answered = [o for o in outcomes if o.result is not None]
    failed = [o for o in outcomes if o.error is not None or (o.result and o.result.error)]
    p50, p95, p99 = percentiles([o.latency_ms for o in answered])
    return GroupStats(
        group=group,
        requests=len(outcomes),
        replies=len(answered),
        errors=len(failed),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        input_tokens=sum(o.result.usage.input_tokens for o in answered if o.result),
        output_tokens=sum(o.result.usage.output_tokens for o in answered if o.result),
    )


def group_label(result: InferenceResult | None) -> str:
    if result is None:
        return "(no reply)"
    prompt = f"{result.prompt_name}@v{result.prompt_version}" if result.prompt_name else "raw"
    return f"{prompt} / {result.variant or '-'} / {result.pool or '-'}"


def summarize_by_group(outcomes: Iterable[Outcome]) -> list[GroupStats]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[group_label(outcome.result)].append(outcome)
    return [summarize(name, items) for name, items in sorted(groups.items())]
