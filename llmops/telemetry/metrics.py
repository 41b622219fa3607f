"""Prometheus metrics every service shares, and the `/metrics` endpoint that serves them.

One process runs one service, so Prometheus' own `job`/`instance` labels tell services apart;
the `service` label is kept anyway so metrics stay distinct when several services share a
process (tests, the embedded stack's helpers).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:  # annotations only: the store imports the buckets without the schemas
    from schemas.responses import Timings

NAMESPACE = "llmops"

# Seconds; from a fast routing decision (~ms) to a long generation (minutes). The one set of
# latency edges: every histogram of seconds (the store's too) uses it or a range of it, so
# quantiles from different services line up.
LATENCY_BUCKETS: tuple[float, ...] = (
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


def latency_buckets(up_to: float, *, sub_millisecond: bool = False) -> tuple[float, ...]:
    """LATENCY_BUCKETS up to `up_to` (an edge of the set) for what never takes longer;
    `sub_millisecond` adds one edge at half the first (0.5 ms) for what is often faster than
    a routing decision (a GPU step, a cached query)."""
    if up_to not in LATENCY_BUCKETS:
        raise ValueError(f"{up_to} is not a latency bucket edge")
    finer = (LATENCY_BUCKETS[0] / 2,) if sub_millisecond else ()
    return finer + tuple(edge for edge in LATENCY_BUCKETS if edge <= up_to)


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

# --- the request path: router and pools -----------------------------------------------------

# Seconds per output token: from a fast GPU step (under a ms) to a slow CPU one (seconds).
STEP_BUCKETS = latency_buckets(2.5, sub_millisecond=True)
ROUTED = Counter(
    "routed",
    "Requests routed to a pool, by pool and the kind of reason (cheapest_healthy, "
    "spillover, failover, canary, probe, all_saturated, cold_start, last_resort, rescued)",
    ["pool", "reason"],
    namespace=NAMESPACE,
)
UNROUTED = Counter(
    "unrouted",
    "Requests the router answered itself with an error instead of routing, by error kind",
    ["kind"],
    namespace=NAMESPACE,
)
PARKED = Gauge(
    "parked_requests",
    "Requests waiting for a healthy pool now (routing.wait_for_pool_s)",
    ["service"],
    namespace=NAMESPACE,
)
QUEUE_DEPTH = Gauge(
    "queue_depth",
    "Requests in a pool's topic not yet taken by this instance, at its last heartbeat",
    ["pool"],
    namespace=NAMESPACE,
)
TOKENS = Counter(
    "tokens",
    "Tokens of the requests a pool served, by direction (input: prompt, output: generated)",
    ["pool", "direction"],
    namespace=NAMESPACE,
)
REQUEST_SECONDS = Histogram(
    "inference_request_seconds",
    "A request in a pool, from consumed to its result, by outcome (ok or the error kind)",
    ["pool", "outcome"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
FIRST_TOKEN_SECONDS = Histogram(
    "time_to_first_token_seconds",
    "From the engine taking a request to its first token",
    ["pool"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
STEP_SECONDS = Histogram(
    "time_per_output_token_seconds",
    "The engine's step time as each request saw it: mean time per output token after the first",
    ["pool"],
    namespace=NAMESPACE,
    buckets=STEP_BUCKETS,
)
_REASON_KIND = re.compile(r"[a-z_]{1,32}")


def reason_kind(route_reason: str) -> str:
    """The kind a route reason starts with (`failover: ...` -> failover); a bounded label."""
    head = route_reason.split(":", 1)[0].strip()
    return head if _REASON_KIND.fullmatch(head) else "other"


def count_routed(pool: str, route_reason: str) -> None:
    ROUTED.labels(pool, reason_kind(route_reason)).inc()


def count_unrouted(kind: str) -> None:
    UNROUTED.labels(kind).inc()


def observe_inference(
    pool: str, input_tokens: int, output_tokens: int, timings_ms: Timings, outcome: str
) -> None:
    """One request a pool finished: its tokens and timings (milliseconds, as in results)."""
    TOKENS.labels(pool, "input").inc(input_tokens)
    TOKENS.labels(pool, "output").inc(output_tokens)
    REQUEST_SECONDS.labels(pool, outcome).observe(timings_ms.total_ms / 1000)
    if output_tokens > 0:
        FIRST_TOKEN_SECONDS.labels(pool).observe(timings_ms.ttft_ms / 1000)
    if output_tokens > 1:
        STEP_SECONDS.labels(pool).observe(timings_ms.tpot_ms / 1000)


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
