"""Start the trace receiver as a child process and wait until it accepts connections."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from llmops.local.procs import port_open, stop_process, wait_until


def traces_env(clickhouse_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
    env.update(extra or {})
    env["CLICKHOUSE_URL"] = clickhouse_url
    # The receiver must never export its own spans to itself.
    env["OTEL_SDK_DISABLED"] = "true"
    env["OTEL_TRACES_EXPORTER"] = "none"
    return env


def start_traces(
    host: str,
    port: int,
    clickhouse_url: str,
    log_path: Path | None = None,
    *,
    extra_args: list[str] | None = None,
    timeout_s: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m llmops.local.otlp_receiver` on host:port, writing into `clickhouse_url`'s DB.
    env: more variables (the embedded stack's LLMOPS_DATA_DIR, where the store's
    credentials are)."""
    if port_open(host, port):
        raise RuntimeError(
            f"port {host}:{port} is already taken; stop what runs there or pick another port"
        )
    command = [
        sys.executable,
        "-m",
        "llmops.local.otlp_receiver",
        "--host",
        host,
        "--port",
        str(port),
        "--clickhouse-url",
        clickhouse_url,
        *(extra_args or []),
    ]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = (
            subprocess.Popen(  # own session: Ctrl-C is for the supervisor (llmops/local/broker.py)
                command,
                env=traces_env(clickhouse_url, env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]  # the child holds its own copy
    try:
        wait_until(
            lambda: port_open(host, port) or proc.poll() is not None,
            timeout_s,
            "the trace receiver",
        )
    except TimeoutError:
        stop_traces(proc)
        raise
    if proc.poll() is not None:
        raise RuntimeError(
            f"the trace receiver exited at start (code {proc.returncode}); see {log_path}"
        )
    return proc


def stop_traces(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM (queued spans are written first), then SIGKILL."""
    return stop_process(proc, timeout)
