"""Start the store as a subprocess and wait until it answers /ping (local stack and tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from llmops.clickhouse.credentials import load_credentials
from llmops.local.procs import port_open, stop_process, wait_until

START_TIMEOUT_S = 60.0


def store_command(data_dir: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llmops.local.clickhouse_server",
        "--data-dir",
        str(data_dir),
        "--host",
        host,
        "--port",
        str(port),
    ]


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=timeout) as resp:
            return bool(resp.status == 200 and resp.read() == b"Ok.\n")
    except (urllib.error.URLError, OSError):
        return False


def start_store(
    data_dir: Path,
    host: str,
    port: int,
    password: str | None = None,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `python -m llmops.local.clickhouse_server` on `data_dir` and wait until it serves.

    The password travels in the environment, not argv, so `ps` does not show it. `env`:
    more variables for the store (LLMOPS_STORE_* limits). The accounts are in
    `llmops.clickhouse.credentials.load_credentials(data_dir)` once this returns."""
    if port_open(host, port):
        raise RuntimeError(
            f"port {host}:{port} is already taken; stop what runs there or set "
            "LLMOPS_STORE_PORT to a free port"
        )
    child_env = {**os.environ, **(env or {})}
    child_env.pop("LLMOPS_STORE_PASSWORD", None)
    if password is not None:
        child_env["LLMOPS_STORE_PASSWORD"] = password
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(  # own session: Ctrl-C is for the supervisor (see broker.py)
            store_command(data_dir, host, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]
    try:
        wait_until(
            lambda: proc.poll() is not None or ping(host, port), START_TIMEOUT_S, "the store"
        )
    except TimeoutError:
        stop_store(proc)
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"the store exited at start (code {proc.returncode}); see {log_path}")
    return proc


def service_url(data_dir: Path, host: str, port: int) -> str:
    """http://user:password@host:port for the service account of a store started on
    `data_dir` (benches and tests that start their own store)."""
    found = load_credentials(data_dir)
    if found is None:
        raise RuntimeError(f"no store credentials in {data_dir}: start the store first")
    login = f"{quote(found.service_user, safe='')}:{quote(found.service_password, safe='')}"
    return f"http://{login}@{host}:{port}"


def stop_store(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM (the store finishes its requests and closes the engine), then SIGKILL."""
    return stop_process(proc, timeout)
