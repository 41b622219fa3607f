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
# A child whose broker is gone has nothing to drain into: it gets this long to stop, not the
# full grace. Enough for the metrics worker to flush its rows (~2 s measured); a pool's
# heartbeat and producer would take ~17 s to give up on the broker, and are killed.
NEED_GONE_GRACE_S = 5.0


@dataclass
class Child:
    """A supervised process. `start` returns a running Popen (it may wait for readiness)."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    restart: bool = True
    tier: int = 2  # stop order: higher first (services 2, traces 1, store 0, broker -1)
    # The child this one cannot work without (the broker): never started while it is down.
    needs: str | None = None
    # Set when this child's death loses state that the children needing it hold positions
    # in (an in-memory broker): says what was lost, and those children are stopped at its
    # death and started afresh once it is back.
    loses: str | None = None
    restart_note: str = ""  # what a restart redid besides the process, shown with it
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start_at: float = 0.0
    held: bool = False  # stopped by us until what it needs is back
    exits: list[int] = field(default_factory=list)


def python_child(
    name: str,
    module_args: list[str],
    env: dict[str, str],
    log_dir: Path,
    restart: bool = True,
    needs: str | None = None,
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

    return Child(name, start, restart, needs=needs)


def _backoff(restarts: int) -> float:
    return min(MAX_BACKOFF_S, 0.5 * float(2 ** min(restarts, 5)))


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stopping = False

    def add(self, child: Child) -> Child:
        child.proc = child.start()
        self.children.append(child)
        log.info("started %s (pid %d)", child.name, child.proc.pid)
        return child

    def running(self, name: str) -> bool:
        return any(
            c.name == name and c.proc is not None and c.proc.poll() is None for c in self.children
        )

    def _need_up(self, child: Child) -> bool:
        return child.needs is None or self.running(child.needs)

    def check(self) -> list[str]:
        """Restart children that died (with backoff), each only once what it needs runs.
        Returns events worth showing."""
        events: list[str] = []
        for child in self.children:
            if child.proc is None or self.stopping:
                continue
            now = time.monotonic()
            if child.held:
                if self._need_up(child):
                    events.append(self._restart(child))
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if child.next_start_at == 0.0:
                child.exits.append(code)
                child.next_start_at = now + _backoff(child.restarts)
                events.append(f"{child.name} exited with code {code}")
                if child.loses is not None:
                    events.extend(self._hold_dependents(child))
                if not child.restart:
                    child.proc = None
                continue
            if child.restart and now >= child.next_start_at and self._need_up(child):
                events.append(self._restart(child))
        return events

    def _restart(self, child: Child) -> str:
        child.restarts += 1
        child.held = False
        try:
            child.proc = child.start()
        except Exception as exc:  # e.g. its port taken meanwhile: try again after a backoff
            child.next_start_at = time.monotonic() + _backoff(child.restarts)
            return f"{child.name} could not restart: {exc}"
        child.next_start_at = 0.0
        note = f"; {child.restart_note}" if child.restart_note else ""
        return f"{child.name} restarted (pid {child.proc.pid}){note}"

    def _hold_dependents(self, lost: Child) -> list[str]:
        """`lost` died with state its dependents relied on (their read positions, groups and
        topics): stop them now (nothing left to drain into) and hold them until it is back,
        so none of them reconnects to the new one with stale positions or auto-creates a
        topic before it is made at its proper size."""
        dependents = [c for c in self.children if c.needs == lost.name and c.proc is not None]
        if not dependents:
            return [f"{lost.name} lost {lost.loses}"]
        # Killed if still there after the short grace: what they could drain is lost anyway.
        self._terminate(
            [(c.proc, NEED_GONE_GRACE_S) for c in dependents if c.proc is not None], quiet=True
        )
        for child in dependents:
            child.held = True
            child.next_start_at = 0.0
        names = ", ".join(c.name for c in dependents)
        return [f"{lost.name} lost {lost.loses}; {names} stopped until it is back"]

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM tier by tier, highest first (our services, then the store, then the
        broker), so consumers drain while the broker is still there; a tier stops in
        parallel and whatever outlives the grace period is killed."""
        self.stopping = True
        for tier in sorted({c.tier for c in self.children}, reverse=True):
            running = [
                c
                for c in self.children
                if c.tier == tier and c.proc is not None and c.proc.poll() is None
            ]
            orphans = [c.name for c in running if not self._need_up(c)]
            if orphans:
                log.warning(
                    "%s cannot drain (what they need is down): %.0fs to stop",
                    ", ".join(orphans),
                    min(grace_s, NEED_GONE_GRACE_S),
                )
            self._terminate(
                [
                    (c.proc, min(grace_s, NEED_GONE_GRACE_S) if c.name in orphans else grace_s)
                    for c in running
                    if c.proc is not None
                ]
            )

    @staticmethod
    def _terminate(procs: list[tuple[subprocess.Popen[bytes], float]], quiet: bool = False) -> None:
        """SIGTERM them all at once; kill each one still there after its grace."""
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for proc, grace_s in procs:
            try:
                proc.wait(max(0.0, started + grace_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.log(
                    logging.INFO if quiet else logging.WARNING,
                    "pid %d did not stop in %.0fs; killing it",
                    proc.pid,
                    grace_s,
                )
                proc.kill()
                proc.wait()

    def status(self) -> list[tuple[str, str, int]]:
        rows = []
        for child in self.children:
            alive = child.proc is not None and child.proc.poll() is None
            pid = child.proc.pid if child.proc else 0
            rows.append((child.name, "running" if alive else "stopped", pid))
        return rows
