"""Tracing for the CLI's short-lived app side (`send`, `demo`): the SDK's span is the root of
each request's trace, so it must be exported, and flushed before the process exits."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from llmops.config import Settings
from llmops.telemetry.setup import setup_telemetry

LOOPBACK = "127.0.0.1"


def embedded_receiver(settings: Settings, timeout_s: float = 0.2) -> str | None:
    """The embedded trace receiver's base URL when it is listening, else None."""
    try:
        with socket.create_connection((LOOPBACK, settings.traces_port), timeout=timeout_s):
            return f"http://{LOOPBACK}:{settings.traces_port}"
    except OSError:
        return None


@contextmanager
def app_tracing(service: str, fallback_endpoint: str | None) -> Iterator[None]:
    """Spans to OTEL_* if set, else to `fallback_endpoint`; flushed when the block ends.

    Flushed, not shut down: the provider is global and once per process (the CLI's tests
    run many commands in one process); the provider shuts itself down at exit (atexit)."""
    provider = setup_telemetry(service, fallback_endpoint)
    try:
        yield
    finally:
        provider.force_flush(5000)
