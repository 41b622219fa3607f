"""`llmops up` as a person starts it from a shell, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from llmops.local.procs import wait_until

LLMOPS = str(Path(sys.executable).with_name("llmops"))


def start_up(env: dict[str, str], log: Path, timeout_s: float) -> subprocess.Popen[bytes]:
    """`llmops up` in a session of its own (a shell's job: Ctrl-C reaches its whole process
    group), its output in `log`; returns once it printed `platform up`, or exited."""
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [LLMOPS, "up"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(
            lambda: b"platform up" in log.read_bytes() or up.poll() is not None,
            timeout_s,
            "`llmops up` to report the platform up",
        )
    except BaseException:
        os.killpg(up.pid, signal.SIGKILL)  # never left running behind a failed test
        up.wait()
        raise
    return up
