"""Child processes of `llmops up`: started in order, restarted when they die, stopped cleanly."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

STOP_GRACE_S = 20.0
MAX_BACKOFF_S = 10.0


@dataclass
class Child:
    """A supervised process. `start` returns a running Popen (it may wait for readiness)."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    restart: bool = True
    tier: int = 2  # stop order: higher first (services 2, traces 1, store 0, broker -1)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start_at: float = 0.0
    exits: list[int] = field(default_factory=list)


def python_child(
    name: str, module_args: list[str], env: dict[str, str], log_dir: Path, restart: bool = True
) -> Child:
    """A `python -m ...` child with its output appended to `<log_dir>/<name>.log`."""
    import sys

    def start() -> subprocess.Popen[bytes]:
        log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        return subprocess.Popen(
            [sys.executable, "-m", *module_args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )

    return Child(name, start, restart)


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stopping = False

    def add(self, child: Child) -> Child:
        child.proc = child.start()
        self.children.append(child)
        log.info("started %s (pid %d)", child.name, child.proc.pid)
        return child

    def check(self) -> list[str]:
        """Restart children that died (with backoff). Returns events worth showing."""
        events: list[str] = []
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or self.stopping:
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if child.next_start_at == 0.0:
                child.exits.append(code)
                backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** min(child.restarts, 5))
                child.next_start_at = now + backoff
                events.append(f"{child.name} exited with code {code}")
                if not child.restart:
                    child.proc = None
                continue
            if child.restart and now >= child.next_start_at:
                child.proc = child.start()
                child.restarts += 1
                child.next_start_at = 0.0
                events.append(f"{child.name} restarted (pid {child.proc.pid})")
        return events

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM tier by tier, highest first (our services, then the store, then the
        broker), so consumers drain while the broker is still there; a tier stops in
        parallel and whatever outlives the grace period is killed."""
        self.stopping = True
        for tier in sorted({c.tier for c in self.children}, reverse=True):
            running = [
                c.proc
                for c in self.children
                if c.tier == tier and c.proc is not None and c.proc.poll() is None
            ]
            for proc in running:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for proc in running:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("pid %d did not stop in %.0fs; killing it", proc.pid, grace_s)
                    proc.kill()
                    proc.wait()

    def status(self) -> list[tuple[str, str, int]]:
        rows = []
        for child in self.children:
            alive = child.proc is not None and child.proc.poll() is None
            pid = child.proc.pid if child.proc else 0
            rows.append((child.name, "running" if alive else "stopped", pid))
        return rows
