"""Engine tokens/s directly vs the same engine behind the Kafka inference consumer.

    .venv/bin/python bench/engine.py                        # fake and transformers (tiny-random)
    .venv/bin/python bench/engine.py --engine transformers --model gemma-3-270m
    VLLM_CPU_KVCACHE_SPACE=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 \\
        .venv-vllm/bin/python bench/engine.py --engine vllm
    .venv/bin/python bench/engine.py --engine transformers --device cuda --model random-llama-1b

For each engine, built from a PoolConfig by the platform's factory and started once:

- direct: `concurrency` streams of `engine.generate` in a closed loop (a finished request is
  replaced at once) until `--requests-per-stream` x concurrency requests have finished;
- consumer: the same engine instance (no second model load) served by the real inference
  consumer (`build_worker` and its loop, heartbeat included) on a real Tansu broker on a free
  port. A load generator keeps exactly `concurrency` RoutedRequests in flight on
  `llm.inference.<pool>` (reply topic set, as the router sends them) and counts output tokens
  from the final InferenceResults on its reply topic.

Greedy requests of at most `--tokens` output tokens over the same prompts in both modes;
tokens/s = output tokens / wall time of the round. Direct and consumer rounds alternate, so a
change of load on this shared machine hits both alike; of `--repeat` rounds per level the
median is kept; efficiency = consumer tokens/s / direct tokens/s.

The load generator is a child process (this script with `--load-generator`), talking JSON
lines over its stdin/stdout. In production the app runs elsewhere; in the consumer's process
its Python work (building requests, parsing replies) would take the GIL from the event loop
and the engine's threads and be charged to the consumer. It pre-builds each round's requests
before the clock starts. On a 2-core machine it still takes CPU from the consumer (as does the
broker): its and the broker's CPU time are shown beside the consumer's. Torch runs one
thread (OMP_NUM_THREADS=1 unless set), as the embedded stack runs a pool. CPU time of the serving
process is its own and its engine's children's (vLLM's engine core), not the broker's or the
load generator's.

TTFT: direct, from `generate` to the first chunk with tokens; consumer, from the record's
consumption to its first token as the consumer reports it (timings queue_ms + ttft_ms), so the
broker hop before it is not in it. Ends with `RESULT consumer_efficiency_c1=... ...`
(keys of the first engine plain, and every engine's prefixed with its kind when several run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread, as the embedded stack runs each pool: on a small shared box more threads
# wait on each other (see TransformersEngineConfig.threads). Set OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from engine_streams import (
    Outcome,
    Round,
    closed_loop,
    cpu_seconds,
    direct_round,
    median_round,
    prompt_for,
)
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from llmops.config import (
    POOL_ADAPTER,
    FakePool,
    PoolConfig,
    Settings,
    TransformersPool,
    VllmOptions,
)
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.record import event_headers
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.local.broker import start_broker
from llmops.local.procs import free_port, stop_process
from schemas import ChatMessage, PromptRequest, RoutedRequest, SamplingParams, utc_now
from schemas.topics import inference_topic, reply_topic
from services.inference.engines.base import Engine
from services.inference.engines.factory import create_engine
from services.inference.service import build_worker

console = Console(width=160)
WARM_TOKENS = 8


@dataclass(frozen=True)
class Level:
    direct: Round
    consumer: Round
    side_cpu_s: float  # load generator + broker, over the consumer round

    @property
    def level(self) -> int:
        return self.direct.concurrency

    @property
    def efficiency(self) -> float:
        return self.consumer.tokens_per_s / self.direct.tokens_per_s


# ---------------------------------------------------------------- load generator (child)


def routed_request(
    pool: PoolConfig, request_id: str, i: int, tokens: int, reply: str
) -> RoutedRequest:
    messages = [ChatMessage(role="user", content=prompt_for(i))]
    request = PromptRequest(
        request_id=request_id,
        messages=messages,
        sampling=SamplingParams(max_tokens=tokens, temperature=0.0),
        reply_to=reply,
    )
    return RoutedRequest(
        request=request,
        messages=messages,
        pool=pool.name,
        model=pool.model,
        route_reason="bench",
        routed_at=utc_now(),
    )


class LoadGenerator:
    """Keeps `concurrency` routed requests in flight and matches the replies to them."""

    def __init__(self, bootstrap: str, pool: PoolConfig) -> None:
        self._pool = pool
        self._topic = inference_topic(pool.name).name
        self._reply = reply_topic(f"bench-engine-{uuid.uuid4().hex[:8]}")
        self._producer = Producer(BusConfig(bootstrap, client_id="bench-load"))
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="bench-load",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=Settings().fetch_max_wait_ms,
        )
        self._bootstrap = bootstrap
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._rounds = 0
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(ensure_topics, self._bootstrap, [self._reply])
        await self._producer.start()
        await self._consumer.start()
        partition = TopicPartition(self._reply.name, 0)
        self._consumer.assign([partition])
        await self._consumer.seek_to_beginning(partition)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._consumer.stop()
        await self._producer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    result = json.loads(record.value)
                    waiter = self._waiting.pop(result["request_id"], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(result)

    async def run(self, concurrency: int, requests: int, tokens: int) -> dict[str, Any]:
        self._rounds += 1
        ids = [f"load-{self._rounds}-{i}" for i in range(requests)]
        routed = [
            routed_request(self._pool, ids[i], i, tokens, self._reply.name) for i in range(requests)
        ]
        payloads = [r.to_bytes() for r in routed]
        headers = event_headers(routed[0])
        errors: list[str] = []
        loop = asyncio.get_running_loop()

        async def one(i: int) -> Outcome:
            waiter = loop.create_future()
            self._waiting[ids[i]] = waiter
            await self._producer.send(self._topic, payloads[i], key=ids[i], headers=headers)
            result = await waiter
            if result.get("error"):
                errors.append(str(result["error"]))
            timings = result.get("timings", {})
            ttft_ms = timings.get("queue_ms", 0.0) + timings.get("ttft_ms", 0.0)
            return Outcome(result.get("usage", {}).get("output_tokens", 0), ttft_ms / 1000)

        done = await closed_loop(one, concurrency, requests, lambda: cpu_seconds(False))
        return {
            "tokens": done.tokens,
            "requests": done.requests,
            "wall_s": done.wall_s,
            "ttft_ms": done.ttft_ms,
            "cpu_s": done.cpu_s,
            "errors": errors[:3],
        }


async def serve_load(bootstrap: str, pool_json: str) -> None:
    """The child: one JSON command per stdin line, one JSON answer per stdout line."""
    generator = LoadGenerator(bootstrap, POOL_ADAPTER.validate_json(pool_json))
    await generator.start()
    print(json.dumps({"ready": True}), flush=True)
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = json.loads(line)
            answer = await generator.run(
                command["concurrency"], command["requests"], command["tokens"]
            )
            print(json.dumps(answer), flush=True)
    finally:
        await generator.stop()


class LoadClient:
    """The parent's handle on the load generator process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._ps = psutil.Process(proc.pid)
        self.serving_cpu = lambda: cpu_seconds(False)

    @classmethod
    async def start(cls, bootstrap: str, pool: PoolConfig) -> LoadClient:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--load-generator",
            bootstrap,
            pool.model_dump_json(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        client = cls(proc)
        await client._answer()
        return client

    def cpu_s(self) -> float:
        return sum(self._ps.cpu_times()[:2])

    async def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator exited (code {await self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def round(self, concurrency: int, requests: int, tokens: int) -> Round:
        assert self.proc.stdin is not None
        command = {"concurrency": concurrency, "requests": requests, "tokens": tokens}
        cpu = self.serving_cpu()
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        answer = await self._answer()
        if answer["errors"]:
            raise RuntimeError(f"requests failed: {answer['errors']}")
        # The consumer process's CPU over the round (the child's own is in answer["cpu_s"]).
        return Round(
            concurrency=concurrency,
            requests=answer["requests"],
            tokens=answer["tokens"],
            wall_s=answer["wall_s"],
            cpu_s=self.serving_cpu() - cpu,
            ttft_ms=answer["ttft_ms"],
            load=os.getloadavg()[0],
        )

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ---------------------------------------------------------------- the benchmark (parent)


def bench_pool(kind: str, args: argparse.Namespace, capacity: int) -> PoolConfig:
    name = f"bench-{kind}"
    if kind == "fake":
        return FakePool(
            name=name,
            model="fake",
            capacity=capacity,
            fake_ttft_ms=args.fake_ttft_ms,
            fake_tpot_ms=args.fake_tpot_ms,
        )
    if kind == "transformers":
        return TransformersPool(name=name, model=args.model, capacity=capacity, device=args.device)
    # vLLM on CPU: float32 like the transformers engine, no compilation (start in seconds).
    options = VllmOptions(
        dtype="float32" if args.device == "cpu" else "auto",
        max_model_len=args.max_model_len,
        enforce_eager=args.device == "cpu",
        cpu_kvcache_space_gib=1 if args.device == "cpu" else None,
    )
    return POOL_ADAPTER.validate_python(
        {"name": name, "engine": kind, "model": args.model, "capacity": capacity, "vllm": options}
    )


async def bench_engine(
    kind: str, args: argparse.Namespace, bootstrap: str, broker: psutil.Process
) -> list[Level]:
    levels = [int(c) for c in args.concurrency.split(",")]
    # Capacity >= the top level: the consumer never pauses below the level.
    pool = bench_pool(kind, args, max(args.capacity or 0, *levels))
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="llmops-bench-"))
    # A key of its own: the consumer signs its results, as a deployment's does.
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        pools=[pool],
        data_dir=data_dir,
        signing_key=SecretStr(secrets.token_hex(32)),
    )
    await asyncio.to_thread(ensure_topics, bootstrap, platform_topics([pool.name]))
    engine = create_engine(pool, data_dir)
    started = time.perf_counter()
    await engine.start()
    console.print(f"{kind}: engine {pool.model} started in {time.perf_counter() - started:.1f} s")
    try:
        return await _measure(engine, pool, settings, levels, args, broker)
    finally:
        await engine.stop()


async def _measure(
    engine: Engine,
    pool: PoolConfig,
    settings: Settings,
    levels: list[int],
    args: argparse.Namespace,
    broker: psutil.Process,
) -> list[Level]:
    bootstrap = settings.kafka_bootstrap_servers
    bus = BusConfig.from_settings(settings, client_id=f"llmops-inference-{pool.name}")
    async with Producer(bus) as out:
        _, loop = build_worker(settings, pool, engine, out)
        serving = asyncio.create_task(loop.run())
        load = await LoadClient.start(bootstrap, pool)
        outside = frozenset({load.proc.pid, broker.pid})

        def serving_cpu() -> float:  # this process and the engine's own children (vLLM's core)
            return cpu_seconds(True, outside)

        load.serving_cpu = serving_cpu
        try:
            await load.round(1, 1, 1)  # the first one waits for the consumer group to form
            for c in levels:  # warm every batch shape on both paths
                await direct_round(engine, c, WARM_TOKENS)
                await load.round(c, c, WARM_TOKENS)
            results = []
            for c in levels:
                n = c * args.requests_per_stream
                direct, consumer, side = [], [], []
                for _ in range(args.repeat):
                    direct.append(await direct_round(engine, c, args.tokens, n, cpu=serving_cpu))
                    side_start = load.cpu_s() + sum(broker.cpu_times()[:2])
                    consumer.append(await load.round(c, n, args.tokens))
                    side.append(load.cpu_s() + sum(broker.cpu_times()[:2]) - side_start)
                chosen = median_round(consumer)
                level = Level(median_round(direct), chosen, side[consumer.index(chosen)])
                console.print(
                    f"  c={c}: direct {level.direct.tokens_per_s:.1f} tok/s, consumer "
                    f"{level.consumer.tokens_per_s:.1f} tok/s ({level.efficiency:.1%}), "
                    f"load {level.consumer.load:.1f}"
                )
                results.append(level)
            return results
        finally:
            await load.close()
            loop.stop()
            await serving


def per_1k(cpu_s: float, tokens: int) -> str:
    return f"{1e6 * cpu_s / tokens:.0f}" if tokens else "-"


def level_table(title: str, rows: list[Level]) -> Table:
    table = Table(title=title)
    columns = (
        "streams",
        "direct tok/s",
        "consumer tok/s",
        "efficiency",
        "TTFT ms direct",
        "TTFT ms consumer",
        "CPU ms/1k tok: direct",
        "consumer",
        "loadgen+broker",
        "load 1m d / c",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        d, c = row.direct, row.consumer
        table.add_row(
            f"{d.concurrency}",
            f"{d.tokens_per_s:.1f}",
            f"{c.tokens_per_s:.1f}",
            f"{row.efficiency:.1%}",
            f"{d.ttft_ms:.0f}",
            f"{c.ttft_ms:.0f}",
            per_1k(d.cpu_s, d.tokens),
            per_1k(c.cpu_s, c.tokens),
            per_1k(row.side_cpu_s, c.tokens),
            f"{d.load:.1f} / {c.load:.1f}",
        )
    return table


def result_line(measured: dict[str, list[Level]]) -> str:
    def keys(rows: list[Level], prefix: str) -> list[str]:
        out = [f"{prefix}consumer_efficiency_c{r.level}={r.efficiency:.3f}" for r in rows]
        for r in rows:
            out.append(f"{prefix}direct_tps_c{r.level}={r.direct.tokens_per_s:.1f}")
            out.append(f"{prefix}consumer_tps_c{r.level}={r.consumer.tokens_per_s:.1f}")
        return out

    kinds = list(measured)
    parts = keys(measured[kinds[0]], "")
    if len(kinds) > 1:
        for kind in kinds:
            parts.extend(keys(measured[kind], f"{kind}_"))
    parts.append(f"load_1m={os.getloadavg()[0]:.2f}")
    return "RESULT " + " ".join(parts)


async def main(args: argparse.Namespace) -> None:
    kinds = [k for k in args.engine.split(",") if k]
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="llmops-bench-engine-"))
    broker_proc = start_broker("127.0.0.1", port, log_dir / "broker.log")
    broker = psutil.Process(broker_proc.pid)
    measured: dict[str, list[Level]] = {}
    try:
        for kind in kinds:
            measured[kind] = await bench_engine(kind, args, f"127.0.0.1:{port}", broker)
    finally:
        stop_process(broker_proc)
    for kind, rows in measured.items():
        model = bench_pool(kind, args, 1).model
        detail = (
            f"ttft {args.fake_ttft_ms:g} ms, tpot {args.fake_tpot_ms:g} ms"
            if kind == "fake"
            else f"{model} on {args.device}"
        )
        title = (
            f"{kind} ({detail}): {args.tokens} tokens/request, "
            f"{args.requests_per_stream} requests/stream, median of {args.repeat}"
        )
        console.print(level_table(title, rows))
    print(result_line(measured))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="fake,transformers", help="comma-separated kinds")
    parser.add_argument(
        "--model", default="tiny-random", help="tiny-random, random-llama-1b, gemma-3-270m, a dir"
    )
    parser.add_argument("--device", default="cpu", help="transformers: cpu or cuda[:N]")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    parser.add_argument(
        "--capacity", type=int, default=None, help="pool capacity (default: the top level)"
    )
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    parser.add_argument("--requests-per-stream", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per level (median kept)")
    parser.add_argument("--fake-ttft-ms", type=float, default=20.0)
    parser.add_argument("--fake-tpot-ms", type=float, default=10.0)
    parser.add_argument("--max-model-len", type=int, default=512, help="vllm")
    parser.add_argument("--data-dir", default=None, help="where models are prepared (temp dir)")
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--load-generator":
        asyncio.run(serve_load(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(main(parse_args()))
