"""The platform's own cost, end to end, with the fake engine (zero model time).

Starts the real processes (Tansu broker, router, one fake-engine pool; with --full also the
store, trace receiver and metrics worker, i.e. everything `llmops up` runs) and drives them
through the SDK from this process:

- sustained: closed loop, many requests in flight -> requests/s end to end;
- open loop at 100 and 500 requests/s -> latency at the app. The engine takes no time, so
  that latency is what the platform adds (SDK publish + router + consumer + reply hops).

Prints a table and ends with `RESULT rps=... p50_ms_at_500=... p99_ms_at_500=...`.
    python bench/pipeline.py [--full] [--requests 6000] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import uvloop
from rich.console import Console
from rich.table import Table

from llmops.config import FakePool, Settings
from llmops.local.demo.report import percentiles
from llmops.local.procs import free_port
from llmops.local.stack import LocalStack
from llmops.sdk import LLMOpsClient

console = Console()
POOL = "bench-fake"


def bench_settings(data_dir: Path, capacity: int) -> Settings:
    pool = FakePool(name=POOL, model="fake", capacity=capacity)
    return Settings(
        data_dir=data_dir,
        broker_port=free_port(),
        store_port=free_port(),
        traces_port=free_port(),
        metrics_base_port=0,
        pools=[pool],
    )


class RequestPathStack(LocalStack):
    """Broker + router + pool only: the request/reply path without the metrics side."""

    def _start_infrastructure(self) -> None:
        from llmops.local.broker import start_broker
        from llmops.local.supervisor import Child

        port = self.settings.broker_port
        log = self.log_dir / "broker.log"
        self.supervisor.add(Child("broker", lambda: start_broker("127.0.0.1", port, log), False))

    def _prepare(self) -> None:
        from llmops.kafka.topics import platform_topics

        self._ensure_topics(platform_topics([POOL]))

    def _start_services(self) -> None:
        from llmops.local.supervisor import python_child

        env = self.service_env()
        self.supervisor.add(python_child("router", ["services.router"], env, self.log_dir))
        self.supervisor.add(
            python_child("inference", ["services.inference", "--pool", POOL], env, self.log_dir)
        )


async def one(client: LLMOpsClient, latencies: list[float], errors: list[str]) -> None:
    started = time.perf_counter()
    try:
        await client.generate([{"role": "user", "content": "ping"}], max_tokens=4)
        latencies.append((time.perf_counter() - started) * 1000)
    except Exception as exc:
        errors.append(repr(exc))


async def warm_up(client: LLMOpsClient) -> None:
    # The first request waits for the groups to form; don't count it.
    await client.generate([{"role": "user", "content": "warm"}], max_tokens=1, timeout_s=120)
    await asyncio.gather(*(one(client, [], []) for _ in range(200)))


async def sustained(
    client: LLMOpsClient, total: int, in_flight: int
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(in_flight)

    async def gated() -> None:
        async with gate:
            await one(client, latencies, errors)

    started = time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(total)))
    wall = time.perf_counter() - started
    return total / wall, latencies, len(errors)


async def open_loop(
    client: LLMOpsClient, rate: float, duration_s: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors: list[str] = []
    tasks = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    count = int(rate * duration_s)
    lag = 0.0
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag = max(lag, -delay)
        tasks.append(asyncio.ensure_future(one(client, latencies, errors)))
    await asyncio.gather(*tasks)
    return latencies, len(errors), lag * 1000


async def measure(bootstrap: str, total: int, duration_s: float) -> dict[str, float]:
    async with LLMOpsClient(bootstrap, app="bench", timeout_s=60) as client:
        await warm_up(client)
        rps, sustained_lat, sustained_err = await sustained(client, total, in_flight=512)
        out = {"rps": rps, "sustained_p50": percentiles(sustained_lat)[0], "errors": sustained_err}
        for rate in (100, 500):
            lat, err, lag = await open_loop(client, rate, duration_s)
            p50, p95, p99 = percentiles(lat)
            out |= {
                f"p50_{rate}": p50,
                f"p95_{rate}": p95,
                f"p99_{rate}": p99,
                f"n_{rate}": len(lat),
                f"lag_{rate}": lag,
            }
            out["errors"] += err
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--full", action="store_true", help="also run store, traces, metrics worker"
    )
    parser.add_argument("--requests", type=int, default=6000, help="requests in the sustained run")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per open-loop rate")
    parser.add_argument("--capacity", type=int, default=512, help="pool in-flight capacity")
    args = parser.parse_args()
    os.environ.setdefault("LLMOPS_LOG_LEVEL", "WARNING")
    tmp = tempfile.mkdtemp(prefix="llmops-bench-")
    settings = bench_settings(Path(tmp), args.capacity)
    stack_cls = LocalStack if args.full else RequestPathStack
    stack = stack_cls(settings, console, embedded=True)
    try:
        addresses = stack.start(with_model=False)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(measure(addresses.kafka, args.requests, args.duration))
    except BaseException:
        console.print(f"[red]bench failed[/]; logs kept in {tmp}/logs")
        raise
    finally:
        stack.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    shape = "full platform (+store, traces, metrics worker)" if args.full else "request path"
    table = Table(title=f"pipeline overhead, fake engine, {shape}, {os.cpu_count()} cores")
    for column in ("load", "requests", "p50 ms", "p95 ms", "p99 ms", "note"):
        table.add_column(column, justify="right" if column != "load" else "left")
    table.add_row(
        "sustained (512 in flight)",
        str(args.requests),
        f"{result['sustained_p50']:.1f}",
        "",
        "",
        f"{result['rps']:.0f} req/s",
    )
    for rate in (100, 500):
        table.add_row(
            f"open loop {rate}/s",
            f"{result[f'n_{rate}']:.0f}",
            f"{result[f'p50_{rate}']:.1f}",
            f"{result[f'p95_{rate}']:.1f}",
            f"{result[f'p99_{rate}']:.1f}",
            f"max send lag {result[f'lag_{rate}']:.1f} ms",
        )
    console.print(table)
    console.print(f"errors: {result['errors']:.0f}")
    print(
        f"RESULT rps={result['rps']:.0f} p50_ms_at_100={result['p50_100']:.2f} "
        f"p99_ms_at_100={result['p99_100']:.2f} p50_ms_at_500={result['p50_500']:.2f} "
        f"p99_ms_at_500={result['p99_500']:.2f} errors={result['errors']:.0f} "
        f"shape={'full' if args.full else 'request_path'}"
    )


if __name__ == "__main__":
    main()
