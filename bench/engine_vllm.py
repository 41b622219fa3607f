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
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from engine_streams import direct_round, median_round, rates_table
from rich.console import Console

from llmops.config import POOL_ADAPTER, VllmOptions
from services.inference.engines.factory import create_engine


async def main(args: argparse.Namespace) -> None:
    console = Console()
    levels = [int(c) for c in args.concurrency.split(",")]
    options = VllmOptions(
        dtype=args.dtype, max_model_len=args.max_model_len, enforce_eager=not args.compile
    )
    # Only a vllm pool takes vLLM's options; the other kinds are built without them.
    fields = {"name": "bench", "engine": args.engine, "model": args.model, "capacity": max(levels)}
    if args.engine == "vllm":
        fields["vllm"] = options
    pool = POOL_ADAPTER.validate_python(fields)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="llmops-bench-"))
    engine = create_engine(pool, data_dir)
    started = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - started
    rows = []
    try:
        for concurrency in levels:  # warm every batch shape first
            await direct_round(engine, concurrency, 8)
        for concurrency in levels:
            rounds = [
                await direct_round(engine, concurrency, args.tokens) for _ in range(args.repeat)
            ]
            rows.append(median_round(rounds))
    finally:
        await engine.stop()
    title = f"{args.model} on {engine.name}, {args.tokens} tokens/request"
    console.print(rates_table(title, rows))
    console.print(f"engine start: {start_s:.1f} s")
    rates = " ".join(f"tokens_per_s_c{row.concurrency}={row.tokens_per_s:.1f}" for row in rows)
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
