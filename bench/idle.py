"""CPU of the idle embedded stack: `llmops up` with the fake engine and no traffic.

Starts the stack on free ports in a scratch data dir, lets it settle, then samples every
process's CPU time over a window and prints each one's share of one core. Run it with
`LLMOPS_FETCH_IDLE_WAIT_MS=0` for the fixed-wait baseline. Ends with
`RESULT idle_cpu_pct=... broker_pct=... router_pct=... pool_pct=... streams_pct=...`.
    python bench/idle.py [--settle 40] [--window 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from llmops.local.procs import free_port

ROLES = {
    "tansu": "broker",
    "llmops.local.clickhouse_server": "store",
    "llmops.local.otlp_receiver": "traces",
    "services.router": "router",
    "services.inference": "pool",
    "streams": "streams",
    "llmops": "supervisor",
}


def role(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        command = " ".join(proc.cmdline())
        for marker, name in ROLES.items():
            if marker in command:
                return name
    return "other"


def cpu_seconds(proc: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = proc.cpu_times()
        return float(times.user + times.system)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=40.0, help="seconds before sampling")
    parser.add_argument("--window", type=float, default=30.0, help="seconds sampled")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="llmops-idle-"))
    env = {
        **os.environ,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_POOLS": json.dumps([{"name": "local-cpu", "engine": "fake", "model": "fake"}]),
        "LLMOPS_BROKER_PORT": str(free_port()),
        "LLMOPS_STORE_PORT": str(free_port()),
        "LLMOPS_TRACES_PORT": str(free_port()),
        "LLMOPS_METRICS_BASE_PORT": "0",
    }
    llmops = str(Path(sys.executable).with_name("llmops"))
    with open(data_dir / "up.log", "wb") as log:
        stack = subprocess.Popen(
            [llmops, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        time.sleep(args.settle)
        root = psutil.Process(stack.pid)
        procs = [root, *root.children(recursive=True)]
        before = {p.pid: cpu_seconds(p) for p in procs}
        started = time.monotonic()
        time.sleep(args.window)
        elapsed = time.monotonic() - started
        shares: dict[str, float] = {}
        for proc in procs:
            name = role(proc)
            used = cpu_seconds(proc) - before[proc.pid]
            shares[name] = shares.get(name, 0.0) + 100.0 * used / elapsed
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
    total = sum(shares.values())
    table = Table(title=f"idle CPU over {elapsed:.0f} s (% of one core)")
    table.add_column("process")
    table.add_column("cpu %", justify="right")
    for name, share in sorted(shares.items(), key=lambda item: -item[1]):
        table.add_row(name, f"{share:.1f}")
    table.add_row("total", f"{total:.1f}")
    Console().print(table)
    print(f"load average {os.getloadavg()[0]:.2f}; logs in {data_dir}")
    parts = " ".join(f"{name}_pct={shares.get(name, 0.0):.2f}" for name in ROLES.values())
    print(f"RESULT idle_cpu_pct={total:.2f} {parts}")


if __name__ == "__main__":
    main()
