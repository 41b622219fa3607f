"""Prometheus metrics every service shares, and the `/metrics` endpoint that serves them.

One process runs one service, so Prometheus' own `job`/`instance` labels tell services apart;
the `service` label is kept anyway so metrics stay distinct when several services share a
process (tests, the embedded stack's helpers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

NAMESPACE = "llmops"

# Seconds; from a fast routing decision (~ms) to a long generation (minutes).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

RECORDS_CONSUMED = Counter(
    "records_consumed",
    "Kafka records taken from a topic",
    ["service", "topic"],
    namespace=NAMESPACE,
)
RECORDS_PRODUCED = Counter(
    "records_produced",
    "Kafka records acknowledged by the broker",
    ["service", "topic"],
    namespace=NAMESPACE,
)
DEAD_LETTERS = Counter(
    "dead_letters",
    "Records sent to the dead-letter topic, by kind",
    ["service", "kind"],
    namespace=NAMESPACE,
)
RECORDS_SKIPPED = Counter(
    "records_skipped",
    "Records a consumer could not take and left without a dead letter (another consumer of "
    "the topic owns its dead letters, or the record is a dead letter itself), by kind",
    ["service", "topic", "kind"],
    namespace=NAMESPACE,
)
PROCESSING_SECONDS = Histogram(
    "processing_seconds",
    "Time to process one record (or one batch) from a topic",
    ["service", "topic"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "in_flight",
    "Records (or requests) being processed now",
    ["service"],
    namespace=NAMESPACE,
)

_servers: dict[tuple[str, int], object] = {}
_servers_lock = threading.Lock()


def start_metrics_server(port: int, host: str = "127.0.0.1") -> None:
    """Serve `/metrics` on host:port in a daemon thread; port 0 disables it.

    Loopback by default: exposing metrics beyond the host is an explicit choice.
    Starting the same address twice in a process is a no-op.
    """
    if port == 0:
        return
    if not 0 < port < 65536:
        raise ValueError(f"metrics port must be 1-65535 (or 0 to disable), got {port}")
    with _servers_lock:
        if (host, port) in _servers:
            return
        try:
            server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
        except OSError as error:
            raise OSError(
                f"cannot serve metrics on {host}:{port} ({error}); pick a free port or 0 to disable"
            ) from error
        _servers[(host, port)] = server


@contextmanager
def track(service: str, topic: str) -> Iterator[None]:
    """Count a record consumed, time its processing and hold it in the in-flight gauge."""
    RECORDS_CONSUMED.labels(service, topic).inc()
    in_flight = IN_FLIGHT.labels(service)
    in_flight.inc()
    start = time.perf_counter()
    try:
        yield
    finally:
        PROCESSING_SECONDS.labels(service, topic).observe(time.perf_counter() - start)
        in_flight.dec()


def count_produced(service: str, topic: str, n: int = 1) -> None:
    RECORDS_PRODUCED.labels(service, topic).inc(n)


def count_dead_letter(service: str, kind: str) -> None:
    DEAD_LETTERS.labels(service, kind).inc()


def count_skipped(service: str, topic: str, kind: str) -> None:
    RECORDS_SKIPPED.labels(service, topic, kind).inc()
