"""`llmops up --demo --exit-after-demo` with the real model: time to first reply and peak memory.

Samples the summed RSS of the whole process tree (supervisor, broker, store, trace receiver,
router, pool, metrics worker) every 0.2 s. Run it once cold (the model is prepared into the
data dir) and once warm. Ends with `RESULT first_reply_s=... peak_rss_mb=... wall_s=...`.
    python bench/up.py [--data-dir .llmops] [--requests 24]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=24)
    args = parser.parse_args()
    llmops = str(Path(sys.executable).with_name("llmops"))
    started = time.monotonic()
    child = subprocess.Popen(
        [llmops, "up", "--demo", "--exit-after-demo", "--demo-requests", str(args.requests)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(child.pid)
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(root))
            except psutil.Error:
                break
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert child.stdout is not None
    output = []
    for line in child.stdout:
        output.append(line)
        print(line, end="")
    code = child.wait()
    done.set()
    wall = time.monotonic() - started
    text = "".join(output)
    first = re.search(r"first reply ([0-9.]+)s after start", text)
    print(f"exit code {code}, wall {wall:.1f}s, peak RSS of the tree {peak / 2**20:.0f} MB")
    print(
        f"RESULT first_reply_s={first.group(1) if first else 'nan'} "
        f"peak_rss_mb={peak / 2**20:.0f} wall_s={wall:.1f} exit={code}"
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
