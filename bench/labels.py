"""Label propagation: a label move published -> the first request served with the new version.

A Tansu broker on a free port; in this process R router replicas (one consumer group, each
following llm.prompts itself, as separate processes would) and one fake-engine pool; an SDK
client keeps C requests in flight on `NAME@bench` (distinct user ids, so every replica serves
some). Then N label moves, alternating the label between versions 1 and 2, every --interval
seconds. For each move:

- served: publish -> the first reply that carries the new version, at the client (so it
  includes one request's round trip after the move took effect);
- applied: publish -> the move applied in each replica's prompt set (polled every 1 ms), one
  sample per replica per move; the slowest replica bounds what any request can see.

Defaults are the platform's: the registry tails wait up to fetch_idle_wait_ms (500) on a
quiet topic, which bounds the propagation (Tansu answers a fetch when its wait expires).

    .venv/bin/python bench/labels.py [--moves 30] [--replicas 3] [--in-flight 8] [--interval 2]

Prints a table and ends with
`RESULT label_propagation_p50_ms=... label_propagation_p99_ms=...` (served), plus the
applied percentiles on the line before.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

# Services refuse to run unsigned: a key of the bench's own unless one is configured.
os.environ.setdefault("LLMOPS_SIGNING_KEY", secrets.token_hex(32))

from llmops.config import FakePool, Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.local.broker import start_broker
from llmops.local.demo.report import percentiles
from llmops.local.procs import free_port, stop_process
from llmops.prompts.publish import publish
from llmops.prompts.registry import PromptSet
from llmops.sdk import LLMOpsClient
from schemas import LabelMove, PromptVersion
from services.inference.engines.fake import FakeEngine
from services.inference.service import build_worker
from services.router.service import Router, RouterLoop, build_router

console = Console()
LABEL = "bench"
POOL = "bench-fake"
WAIT_S = 60.0


@dataclass
class Move:
    version: int
    published: float
    served: float | None = None
    applied: dict[int, float] = field(default_factory=dict)  # replica -> when


def prompt_version(name: str, number: int) -> PromptVersion:
    return PromptVersion.model_validate(
        {
            "name": name,
            "version": number,
            "variables": {"who": {"type": "string"}},
            "params": {"max_tokens": 4},
            "messages": [{"role": "user", "content": f"version {number} for {{{{ who }}}}"}],
        }
    )


async def until(check: object, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Bench:
    def __init__(self, bootstrap: str, replicas: int, in_flight: int) -> None:
        self.bootstrap = bootstrap
        self.pool = FakePool(name=POOL, model="fake", capacity=64)
        self.settings = Settings(
            kafka_bootstrap_servers=bootstrap, pools=[self.pool], metrics_base_port=0
        )
        self.replicas = replicas
        self.in_flight = in_flight
        self.name = f"bench-{uuid.uuid4().hex[:6]}"
        self.routers: list[Router] = []
        self.loops: list[RouterLoop] = []
        self.current: Move | None = None
        self.served = 0
        self.stale_after_applied = 0  # served the old version after every replica applied
        self._stop = asyncio.Event()

    async def _send_loop(self, client: LLMOpsClient, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.monotonic()
            result = await client.generate(
                prompt=self.name,
                label=LABEL,
                variables={"who": f"w{worker}"},
                user_id=f"user-{worker}-{n}",
                timeout_s=30,
            )
            now = time.monotonic()
            self.served += 1
            move = self.current
            if move is None:
                continue
            if result.prompt_version == move.version:
                if move.served is None and now >= move.published:
                    move.served = now
            elif len(move.applied) == self.replicas and sent > max(move.applied.values()):
                self.stale_after_applied += 1

    async def _watch(self) -> None:
        """Each replica's apply time of the current move (1 ms polls)."""
        while not self._stop.is_set():
            move = self.current
            if move is not None:
                for i, router in enumerate(self.routers):
                    if i not in move.applied and (
                        router.registry.prompts.label_version(self.name, LABEL) == move.version
                    ):
                        move.applied[i] = time.monotonic()
            await asyncio.sleep(0.001)

    async def run(self, moves: int, interval_s: float) -> list[Move]:
        await asyncio.to_thread(ensure_topics, self.bootstrap, platform_topics([POOL]))
        producers = [
            Producer(BusConfig.from_settings(self.settings, client_id=f"bench-{i}"))
            for i in range(self.replicas + 2)
        ]
        for producer in producers:
            await producer.start()
        publisher = producers[-1]
        for producer in producers[: self.replicas]:
            router, loop = build_router(
                self.settings, PromptSet(), producer, group_id="llmops-router-bench"
            )
            self.routers.append(router)
            self.loops.append(loop)
        engine = FakeEngine(model="fake")
        await engine.start()
        _, pool_loop = build_worker(self.settings, self.pool, engine, producers[self.replicas])
        tasks = [asyncio.create_task(loop.run()) for loop in [*self.loops, pool_loop]]
        done: list[Move] = []
        try:
            await publish(
                publisher,
                [prompt_version(self.name, 1), prompt_version(self.name, 2)],
                [LabelMove(name=self.name, label=LABEL, version=1, actor="bench")],
            )
            await until(
                lambda: all(
                    r.registry.prompts.label_version(self.name, LABEL) == 1 for r in self.routers
                ),
                "the replicas to read the registry",
            )
            await until(
                lambda: all(loop.consumer.assignment() for loop in self.loops),
                "every replica to own partitions",
            )
            async with LLMOpsClient(self.bootstrap, app="bench-labels") as client:
                senders = [
                    asyncio.create_task(self._send_loop(client, w)) for w in range(self.in_flight)
                ]
                watcher = asyncio.create_task(self._watch())
                await asyncio.sleep(1.0)  # warm: every replica routing
                version = 1
                for i in range(moves):
                    previous, version = version, 3 - version
                    move = Move(version, time.monotonic())
                    self.current = move
                    move_event = LabelMove(
                        name=self.name,
                        label=LABEL,
                        version=version,
                        previous=previous,
                        actor="bench",
                        reason=f"move {i}",
                    )
                    await publish(publisher, [], [move_event])
                    await until(
                        lambda move=move: (
                            move.served is not None and len(move.applied) == self.replicas
                        ),
                        f"move {i} served and applied",
                    )
                    done.append(move)
                    await asyncio.sleep(interval_s)
                self._stop.set()
                await asyncio.gather(*senders, watcher, return_exceptions=True)
        finally:
            self._stop.set()
            for stopping in [*self.loops, pool_loop]:
                stopping.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await engine.stop()
            for producer in producers:
                await producer.stop()
        return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between moves (quiet topic)"
    )
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker("127.0.0.1", port, Path(tmp) / "tansu.log")
        try:
            bench = Bench(f"127.0.0.1:{port}", args.replicas, args.in_flight)
            moves = asyncio.run(bench.run(args.moves, args.interval))
        finally:
            stop_process(broker, 5)
    served = [(m.served - m.published) * 1000 for m in moves if m.served is not None]
    applied = [(t - m.published) * 1000 for m in moves for t in m.applied.values()]
    slowest = [(max(m.applied.values()) - m.published) * 1000 for m in moves if m.applied]
    table = Table(
        title=f"label moves: {len(moves)}, {args.replicas} router replicas, "
        f"{args.in_flight} requests in flight ({bench.served} served)"
    )
    for column in ("measure", "samples", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    for label, values in (
        ("publish -> first reply with the new version", served),
        ("publish -> applied, each replica", applied),
        ("publish -> applied by the slowest replica", slowest),
    ):
        p50, p95, p99 = percentiles(values)
        table.add_row(
            label, str(len(values)), f"{p50:.0f}", f"{p95:.0f}", f"{p99:.0f}", f"{max(values):.0f}"
        )
    console.print(table)
    console.print(
        f"requests sent after every replica applied a move yet served the old version: "
        f"{bench.stale_after_applied}"
    )
    a50, _, a99 = percentiles(applied)
    print(f"applied_p50_ms={a50:.0f} applied_p99_ms={a99:.0f}")
    p50, _, p99 = percentiles(served)
    print(f"RESULT label_propagation_p50_ms={p50:.0f} label_propagation_p99_ms={p99:.0f}")


if __name__ == "__main__":
    main()
