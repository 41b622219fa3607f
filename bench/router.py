"""Router benchmark: routing decisions/s of our policy vs LiteLLM's Router, and routed/s end to end.

1. In-process decisions, 3 pools/deployments each, same machine, one process:
   - ours, the pool decision: `PoolBoard.route()` (cheapest healthy pool with headroom,
     breakers, spillover, the reason), the counterpart of LiteLLM's deployment choice;
   - ours, the whole routing step: `services.router.policy.route()` (prompt choice, pool
     decision and the RoutedRequest message built and validated);
   both over a live board fed a heartbeat per pool each simulated second (requests arrive
   at ARRIVALS_PER_S simulated; each pool reports finishing FINISHED_PER_S, so the cheap pool
   fills up and spills to the next within each second, as in production);
   - LiteLLM `Router`, strategies cost-based-routing and simple-shuffle, through
     `await router.async_get_available_deployment(...)` (the only way its strategies decide).
2. End to end: Tansu on a free port, `python -m services.router` as a subprocess with 3 fake
   pools, N PromptRequests produced with aiokafka as fast as possible, the three
   llm.inference.<pool> topics read (no group) until N routed records arrived.

    .venv/bin/python bench/router.py [--decisions 20000] [--litellm-decisions 5000] [--routed 5000]

LiteLLM comes from the `bench` extra: `make bench-deps`. Prints a table and ends with
`RESULT speedup_vs_litellm=... ours_decisions_per_s=... ours_route_per_s=...
litellm_cost_per_s=... litellm_shuffle_per_s=... routed_per_s=...` (speedup: our pool
decision over the faster LiteLLM strategy's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# LiteLLM fetches its cost map from the internet at import unless told not to.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from llmops.config import FakePool, PoolConfig
from llmops.kafka.signing import SigningKeys
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.local.broker import start_broker
from llmops.local.procs import free_port
from llmops.prompts.registry import PromptSet
from llmops.routing_config import RoutingConfig
from schemas import ChatMessage, PoolStatus, PromptRequest
from schemas.topics import EVENT_TYPE_HEADER, POOL_STATUS, REQUESTS, RESPONSES, inference_topic
from services.router.board import PoolBoard
from services.router.policy import route

REPO = Path(__file__).resolve().parents[1]
MODEL = "gemma-3-270m"
POOLS = [
    FakePool(name="cheap", model=MODEL, cost_per_1k_tokens=0.1, capacity=64),
    FakePool(name="mid", model=MODEL, cost_per_1k_tokens=0.2, capacity=64),
    FakePool(name="dear", model=MODEL, cost_per_1k_tokens=0.3, capacity=64),
]
ARRIVALS_PER_S = 20_000  # simulated request rate: heartbeats come every this many decisions
FINISHED_PER_S = 8_000.0  # what each pool reports finishing per second
# The router takes only signed beats: this run's deployment key, for it and the fake pools.
BENCH_KEYS = SigningKeys("k1", secrets.token_hex(32).encode())


def heartbeat(
    pool: PoolConfig, ts: datetime, in_flight: int = 0, finished_per_s: float = 0.0
) -> PoolStatus:
    return PoolStatus(
        ts=ts,
        pool=pool.name,
        instance=f"{pool.name}-0",
        models=[pool.model],
        capacity=pool.capacity,
        in_flight=in_flight,
        requests_per_s=finished_per_s,
        cost_per_1k_tokens=pool.cost_per_1k_tokens,
    )


def make_requests(n: int, run: str) -> list[PromptRequest]:
    return [
        PromptRequest(
            request_id=f"{run}-{i}",
            user_id=f"user-{i % 997}",
            messages=[ChatMessage(role="user", content=f"question {i}: why is the sky blue?")],
            model=MODEL,
        )
        for i in range(n)
    ]


# --- 1. in-process decisions --------------------------------------------------------------


def bench_ours(requests: list[PromptRequest], whole_step: bool) -> tuple[float, dict[str, int]]:
    """Decisions/s of the pool decision alone, or of the whole routing step."""
    t0 = datetime.now(UTC)
    board = PoolBoard(POOLS, RoutingConfig(), started_at=t0)
    for pool in POOLS:
        board.observe(heartbeat(pool, t0, 0, FINISHED_PER_S), t0)
    board.mark_live(t0)
    prompts = PromptSet()
    chosen: dict[str, int] = {}
    step = timedelta(seconds=1 / ARRIVALS_PER_S)
    start = time.perf_counter()
    for i, request in enumerate(requests):
        now = t0 + step * i
        if i and i % ARRIVALS_PER_S == 0:
            for pool in POOLS:
                board.observe(heartbeat(pool, now, i % 32, FINISHED_PER_S), now)
        if whole_step:
            pool_name = route(request, prompts, POOLS, now, board).pool
        else:
            pool_name = board.route(request.model, request.adapter, request.sticky_key, now).pool
        chosen[pool_name] = chosen.get(pool_name, 0) + 1
    elapsed = time.perf_counter() - start
    return len(requests) / elapsed, chosen


def litellm_model_list() -> list[dict[str, Any]]:
    return [
        {
            "model_name": MODEL,
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_base": f"http://127.0.0.1:{9000 + i}/v1",
                "api_key": "unused",
                "input_cost_per_token": pool.cost_per_1k_tokens / 1000,
                "output_cost_per_token": pool.cost_per_1k_tokens / 1000,
            },
            "model_info": {"id": pool.name},
        }
        for i, pool in enumerate(POOLS)
    ]


async def bench_litellm(strategy: str, n: int) -> tuple[float, dict[str, int]]:
    from litellm import Router

    router = Router(model_list=litellm_model_list(), routing_strategy=strategy)
    messages = [{"role": "user", "content": "why is the sky blue?"}]
    chosen: dict[str, int] = {}
    for _ in range(50):  # warm-up: caches, lazy imports
        await router.async_get_available_deployment(
            model=MODEL, messages=messages, request_kwargs={}
        )
    start = time.perf_counter()
    for _ in range(n):
        deployment = await router.async_get_available_deployment(
            model=MODEL, messages=messages, request_kwargs={}
        )
        name = str(deployment["model_info"]["id"])
        chosen[name] = chosen.get(name, 0) + 1
    elapsed = time.perf_counter() - start
    return n / elapsed, chosen


# --- 2. end to end through the broker -----------------------------------------------------


def start_router(bootstrap: str, work: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOPS_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LLMOPS_DATA_DIR": str(work),
            "LLMOPS_METRICS_BASE_PORT": "0",
            "LLMOPS_POOLS": json.dumps([p.model_dump() for p in POOLS]),
            "LLMOPS_SIGNING_KEY": BENCH_KEYS.key.decode(),
        }
    )
    log = open(work / "router.log", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [sys.executable, "-m", "services.router"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def beat(producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
    """The fake pools' heartbeats, twice a second, so the router sees them up."""
    while not stop.is_set():
        now = datetime.now(UTC)
        for pool in POOLS:
            key, value = pool.name.encode(), heartbeat(pool, now).to_bytes()
            headers = [(EVENT_TYPE_HEADER, b"PoolStatus")]
            headers.append(BENCH_KEYS.header(POOL_STATUS.name, headers, key, value))
            await producer.send(POOL_STATUS.name, value, key=key, headers=headers)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def count_routed(
    consumer: AIOKafkaConsumer, want: set[str], deadline: float, errors: Counter[str]
) -> int:
    """Read until every request id in `want` was routed (on a pool topic) or answered with an
    error by the router (on llm.responses: counted in `errors` by kind); returns how many
    were routed. Ids still in `want` at the deadline were neither."""
    seen = 0
    while want and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
        for tp, records in batches.items():
            for record in records:
                value = json.loads(record.value or b"{}")
                if tp.topic == RESPONSES.name:
                    if value.get("request_id") in want and value.get("error"):
                        want.discard(value["request_id"])
                        errors[value["error"]["kind"]] += 1
                    continue
                request_id = value["request"]["request_id"]
                if request_id in want:
                    want.discard(request_id)
                    seen += 1
    return seen


async def bench_end_to_end(
    bootstrap: str, n: int, timeout_s: float, errors: Counter[str]
) -> tuple[float, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    # The pools' heartbeats on a producer of their own, as pools send them: behind the request
    # burst in one producer's queue they would arrive seconds late, and the router would
    # rightly call the pools dead (no_healthy_pool).
    beats_producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await producer.start()
    await beats_producer.start()
    await consumer.start()
    stop = asyncio.Event()
    beats = asyncio.create_task(beat(beats_producer, stop))
    try:
        partitions = []
        for topic in [inference_topic(pool.name).name for pool in POOLS] + [RESPONSES.name]:
            ids = consumer.partitions_for_topic(topic)
            while not ids:
                await consumer.topics()
                ids = consumer.partitions_for_topic(topic)
            partitions += [TopicPartition(topic, p) for p in ids]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Warm-up: one request routed proves the router is up and has heard the pools.
        warm = make_requests(1, "warm")[0]
        await producer.send_and_wait(REQUESTS.name, warm.to_bytes(), key=warm.sticky_key.encode())
        warm_errors: Counter[str] = Counter()
        if not await count_routed(
            consumer, {warm.request_id}, time.monotonic() + timeout_s, warm_errors
        ):
            raise RuntimeError(f"the router routed nothing ({dict(warm_errors)}); see its log")
        requests = make_requests(n, "e2e")
        payloads = [(r.to_bytes(), r.sticky_key.encode()) for r in requests]
        want = {r.request_id for r in requests}
        start = time.perf_counter()
        sends = [await producer.send(REQUESTS.name, value, key=key) for value, key in payloads]
        await asyncio.gather(*sends)
        seen = await count_routed(consumer, want, time.monotonic() + timeout_s, errors)
        elapsed = time.perf_counter() - start
        if want:
            errors["unanswered"] = len(want)
        return seen / elapsed, seen
    finally:
        stop.set()
        await beats
        await consumer.stop()
        await producer.stop()
        await beats_producer.stop()


def run_end_to_end(n: int, timeout_s: float, errors: Counter[str]) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        work = Path(tmp)
        port = free_port()
        broker = start_broker("127.0.0.1", port, work / "tansu.log")
        bootstrap = f"127.0.0.1:{port}"
        router: subprocess.Popen[bytes] | None = None
        try:
            ensure_topics(bootstrap, platform_topics(p.name for p in POOLS))
            router = start_router(bootstrap, work)
            return asyncio.run(bench_end_to_end(bootstrap, n, timeout_s, errors))
        except Exception:
            print((work / "router.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            for proc in (router, broker):
                if proc is not None:
                    proc.terminate()
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()


# --- report -------------------------------------------------------------------------------


def share(chosen: dict[str, int]) -> str:
    total = sum(chosen.values()) or 1
    return " ".join(f"{name} {100 * count / total:.0f}%" for name, count in sorted(chosen.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--decisions", type=int, default=200_000, help="ours, in process")
    parser.add_argument("--litellm-decisions", type=int, default=5_000, help="per strategy")
    parser.add_argument("--routed", type=int, default=5_000, help="end to end (0: skip)")
    parser.add_argument("--timeout", type=float, default=300.0, help="end-to-end wait, s")
    args = parser.parse_args()

    requests = make_requests(args.decisions, "ours")
    ours, ours_chosen = bench_ours(requests, whole_step=False)
    step, step_chosen = bench_ours(requests, whole_step=True)
    cost, cost_chosen = asyncio.run(bench_litellm("cost-based-routing", args.litellm_decisions))
    shuffle, shuffle_chosen = asyncio.run(bench_litellm("simple-shuffle", args.litellm_decisions))
    errors: Counter[str] = Counter()
    routed, routed_n = (
        run_end_to_end(args.routed, args.timeout, errors) if args.routed else (0.0, 0)
    )

    best = max(cost, shuffle)
    table = Table(title="Routing decisions/s, 3 pools, one process (same machine)")
    table.add_column("router")
    table.add_column("decisions", justify="right")
    table.add_column("per s", justify="right")
    table.add_column("ours / this", justify="right")
    table.add_column("chosen")
    rows = [
        ("ours: pool decision (PoolBoard.route)", args.decisions, ours, ours_chosen),
        ("ours: whole step (policy.route -> RoutedRequest)", args.decisions, step, step_chosen),
        ("LiteLLM cost-based-routing", args.litellm_decisions, cost, cost_chosen),
        ("LiteLLM simple-shuffle", args.litellm_decisions, shuffle, shuffle_chosen),
    ]
    for name, count, rate, chosen in rows:
        table.add_row(name, str(count), f"{rate:,.0f}", f"{ours / rate:.2f}x", share(chosen))
    if args.routed:
        table.add_row(
            "ours end to end (broker, 1 router)",
            f"{routed_n}/{args.routed}",
            f"{routed:,.0f}",
            "",
            "routed records / s" + (f"; not routed: {dict(errors)}" if errors else ""),
        )
    Console().print(table)
    print(
        f"RESULT speedup_vs_litellm={ours / best:.2f} ours_decisions_per_s={ours:.0f} "
        f"ours_route_per_s={step:.0f} step_speedup_vs_litellm={step / best:.2f} "
        f"litellm_cost_per_s={cost:.0f} litellm_shuffle_per_s={shuffle:.0f} "
        f"routed_per_s={routed:.0f} not_routed={sum(errors.values())}"
    )


if __name__ == "__main__":
    main()
