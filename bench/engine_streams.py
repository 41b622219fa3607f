"""Shared by the engine benchmarks: closed-loop streams, CPU time, the median round, a table.

A round keeps `concurrency` requests in flight until `requests` have finished (a closed loop:
each finished request is replaced at once) and reports output tokens per wall-clock second.
What "a request" is, is the caller's: a direct `engine.generate` stream (`engine_stream`), or
a request over Kafka (bench/engine.py's load generator).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psutil
from rich.table import Table

from services.inference.engines.base import Engine, GenerationRequest

PROMPTS = (
    "The capital of France is",
    "A stream of events flows through the broker to",
    "The quick brown fox jumps over",
    "Ask a question, get an answer:",
    "Hello world! Numbers like 42 and",
    "Kafka consumers commit their offsets",
    "The capital of Italy is",
    "Models turn prompts into",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished request: its output tokens and time to first token (seconds)."""

    tokens: int
    ttft_s: float


@dataclass(frozen=True, slots=True)
class Round:
    concurrency: int
    requests: int
    tokens: int
    wall_s: float
    cpu_s: float
    ttft_ms: float  # mean over the round's requests
    load: float  # 1-minute load average at the end

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu_s if self.cpu_s > 0 else 0.0


def cpu_seconds(children: bool = True, exclude: frozenset[int] = frozenset()) -> float:
    """CPU seconds of this process and (optionally) its live children (vLLM's engine core),
    but for the children in `exclude` and theirs."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    if children:
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # exited meanwhile
                if not exclude & {child.pid, *(p.pid for p in child.parents())}:
                    total += sum(child.cpu_times()[:2])
    return total


def prompt_for(i: int) -> str:
    return PROMPTS[i % len(PROMPTS)]


async def engine_stream(engine: Engine, request_id: str, i: int, tokens: int) -> Outcome:
    """One greedy request of at most `tokens` output tokens, straight to the engine."""
    request = GenerationRequest(request_id, (("user", prompt_for(i)),), tokens)
    start, first, out = time.perf_counter(), 0.0, 0
    async for chunk in engine.generate(request):
        if not first and chunk.output_tokens:
            first = time.perf_counter() - start
        out = chunk.output_tokens
    return Outcome(out, first)


async def closed_loop(
    one: Callable[[int], Awaitable[Outcome]],
    concurrency: int,
    requests: int,
    cpu: Callable[[], float] = cpu_seconds,
) -> Round:
    """Requests 0..requests-1 through `one`, exactly `concurrency` at a time while any remain."""
    numbers = itertools.count()
    outcomes: list[Outcome] = []

    async def stream() -> None:
        while (i := next(numbers)) < requests:
            outcomes.append(await one(i))

    start, cpu_start = time.perf_counter(), cpu()
    await asyncio.gather(*(stream() for _ in range(min(concurrency, requests))))
    wall, used = time.perf_counter() - start, cpu() - cpu_start
    return Round(
        concurrency=concurrency,
        requests=len(outcomes),
        tokens=sum(o.tokens for o in outcomes),
        wall_s=wall,
        cpu_s=used,
        ttft_ms=1000 * sum(o.ttft_s for o in outcomes) / max(len(outcomes), 1),
        load=os.getloadavg()[0],
    )


async def direct_round(
    engine: Engine,
    concurrency: int,
    tokens: int,
    requests: int | None = None,
    cpu: Callable[[], float] = cpu_seconds,
) -> Round:
    """A closed loop of direct streams; `requests` defaults to one per stream."""
    stamp = time.monotonic_ns()
    return await closed_loop(
        lambda i: engine_stream(engine, f"bench-{stamp}-{i}", i, tokens),
        concurrency,
        requests if requests is not None else concurrency,
        cpu,
    )


def median_round(rounds: Sequence[Round]) -> Round:
    """The median round by tokens/s: a shared box is noisy."""
    return sorted(rounds, key=lambda r: r.tokens_per_s)[len(rounds) // 2]


def rates_table(title: str, rows: Sequence[Round]) -> Table:
    table = Table(title=title)
    columns = ("streams", "output tokens", "wall s", "tokens/s", "tokens/CPU-s", "TTFT ms", "load")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row.concurrency}",
            f"{row.tokens}",
            f"{row.wall_s:.2f}",
            f"{row.tokens_per_s:.1f}",
            f"{row.tokens_per_cpu_s:.1f}",
            f"{row.ttft_ms:.0f}",
            f"{row.load:.1f}",
        )
    return table
