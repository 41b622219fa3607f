"""Engine throughput of a pool's engine, built as the platform builds it (PoolConfig -> factory).

Meant for the vllm venv (where both vllm and our transformers engine run):

    make venv-vllm
    VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 \
        .venv-vllm/bin/python bench/engine_vllm.py --engine vllm

(VLLM_ENABLE_V1_MULTIPROCESSING=0 runs the model inside vLLM's engine-core process instead of
a further worker process: faster start and less copying on a small CPU box.)

Each round sends N concurrent greedy requests of `--tokens` output tokens; of `--repeat`
rounds per level the median is kept. Prints a table and
ends with `RESULT engine=... tokens_per_s_c1=... tokens_per_s_c8=... tokens_per_s_c16=...`.
The 1-minute load average is printed beside each row: on a shared 2-core box wall-clock
numbers are only comparable at similar load. CPU seconds include the engine's child
processes (vLLM runs its engine core in one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil
from rich.console import Console
from rich.table import Table

from llmops.config import PoolConfig, VllmOptions
from services.inference.engines.base import Engine, GenerationRequest
from services.inference.engines.factory import create_engine

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


def _cpu_s() -> float:
    """CPU seconds of this process and its live children (vLLM's engine core)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # exited meanwhile
            total += sum(child.cpu_times()[:2])
    return total


async def _one(engine: Engine, i: int, tokens: int) -> tuple[int, float]:
    request = GenerationRequest(
        f"bench-{i}-{time.monotonic_ns()}", (("user", PROMPTS[i % len(PROMPTS)]),), tokens
    )
    start, first, out = time.perf_counter(), 0.0, 0
    async for chunk in engine.generate(request):
        if not first and chunk.output_tokens:
            first = time.perf_counter() - start
        out = chunk.output_tokens
    return out, first


async def _round(engine: Engine, concurrency: int, tokens: int) -> dict[str, float]:
    start, cpu = time.perf_counter(), _cpu_s()
    results = await asyncio.gather(*(_one(engine, i, tokens) for i in range(concurrency)))
    wall, cpu = time.perf_counter() - start, _cpu_s() - cpu
    out = sum(r[0] for r in results)
    return {
        "concurrency": concurrency,
        "tokens": out,
        "wall_s": wall,
        "tokens_per_s": out / wall,
        "tokens_per_cpu_s": out / cpu if cpu > 0 else 0.0,
        "ttft_ms": 1000 * sum(r[1] for r in results) / len(results),
        "load": os.getloadavg()[0],
    }


async def main(args: argparse.Namespace) -> None:
    console = Console()
    levels = [int(c) for c in args.concurrency.split(",")]
    options = VllmOptions(
        dtype=args.dtype, max_model_len=args.max_model_len, enforce_eager=not args.compile
    )
    pool = PoolConfig(
        name="bench", engine=args.engine, model=args.model, capacity=max(levels), vllm=options
    )
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="llmops-bench-"))
    engine = create_engine(pool, data_dir)
    started = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - started
    rows = []
    try:
        for concurrency in levels:  # warm every batch shape first
            await _round(engine, concurrency, 8)
        for concurrency in levels:  # the median round by tokens/s: a shared box is noisy
            rounds = [await _round(engine, concurrency, args.tokens) for _ in range(args.repeat)]
            rows.append(sorted(rounds, key=lambda r: r["tokens_per_s"])[len(rounds) // 2])
    finally:
        await engine.stop()
    table = Table(title=f"{args.model} on {engine.name}, {args.tokens} tokens/request")
    columns = ("streams", "output tokens", "wall s", "tokens/s", "tokens/CPU-s", "TTFT ms", "load")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['concurrency']:.0f}",
            f"{row['tokens']:.0f}",
            f"{row['wall_s']:.2f}",
            f"{row['tokens_per_s']:.1f}",
            f"{row['tokens_per_cpu_s']:.1f}",
            f"{row['ttft_ms']:.0f}",
            f"{row['load']:.1f}",
        )
    console.print(table)
    console.print(f"engine start: {start_s:.1f} s")
    rates = " ".join(
        f"tokens_per_s_c{row['concurrency']:.0f}={row['tokens_per_s']:.1f}" for row in rows
    )
    print(f"RESULT engine={engine.name} model={args.model} start_s={start_s:.1f} {rates}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="vllm", choices=("vllm", "transformers", "fake"))
    parser.add_argument("--model", default="tiny-random", help="tiny-random, gemma-3-270m, a dir")
    parser.add_argument("--data-dir", default=None, help="where models are prepared (temp dir)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5, help="rounds per level (median kept)")
    parser.add_argument("--concurrency", default="1,8,16", help="comma-separated levels")
    parser.add_argument("--dtype", default="float32", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--compile", action="store_true", help="vllm: graph compilation on")
    asyncio.run(main(parser.parse_args()))
