"""Engine throughput without the platform: one stream, then N concurrent streams.

    .venv/bin/python bench/engine_direct.py --model gemma-3-270m --tokens 64 --concurrency 8

Prints a table and ends with `RESULT tokens_per_s_c1=... tokens_per_s_c8=...`. The machine's
1-minute load average is printed beside each row: on a shared 2-core box, wall-clock numbers
are only comparable at similar load; tokens per CPU-second are steadier.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from engine_streams import direct_round, rates_table
from rich.console import Console

from services.inference.engines.base import Engine
from services.inference.engines.fake import FakeEngine
from services.inference.engines.transformers_engine import (
    TransformersEngine,
    TransformersEngineConfig,
)
from services.inference.models import load_model, prepare_model


async def main(args: argparse.Namespace) -> None:
    console = Console()
    data_dir = Path(args.data_dir)
    engine: Engine
    if args.model == "fake":
        engine = FakeEngine()
        load_s = 0.0
    else:
        started = time.perf_counter()
        prepare_model(args.model, data_dir, console)
        prepare_s = time.perf_counter() - started
        console.print(f"prepare: {prepare_s:.1f} s")
        config = TransformersEngineConfig(
            attn_implementation=args.attn,
            max_batch_requests=max(args.concurrency, 1),
            dtype=args.dtype,
            threads=args.threads,
        )
        dtype = getattr(torch, args.dtype)
        engine = TransformersEngine(
            args.model, lambda: load_model(args.model, data_dir, dtype), config
        )
    started = time.perf_counter()
    await engine.start()
    load_s = time.perf_counter() - started
    rows = []
    try:
        await direct_round(engine, 1, 8)  # warm the shapes of both paths
        await direct_round(engine, args.concurrency, 8)
        for concurrency in (1, args.concurrency):
            rows.append(await direct_round(engine, concurrency, args.tokens))
    finally:
        await engine.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    title = (
        f"{args.model} ({engine.name}, attn={args.attn}, dtype={args.dtype}, "
        f"threads={torch.get_num_threads()}), {args.tokens} tokens/request"
    )
    console.print(rates_table(title, rows))
    console.print(f"engine start (load + manager): {load_s:.1f} s, peak RSS {peak_mb:.0f} MB")
    print(
        f"RESULT tokens_per_s_c1={rows[0].tokens_per_s:.1f} "
        f"tokens_per_s_c{args.concurrency}={rows[1].tokens_per_s:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="gemma-3-270m", help="tiny-random, gemma-3-270m, a dir, or fake"
    )
    parser.add_argument("--data-dir", default=".llmops")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--attn", default="sdpa", help="sdpa or paged|eager")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    asyncio.run(main(parser.parse_args()))
