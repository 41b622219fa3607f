"""Prometheus metrics of the store: what an SRE needs to see the database's load and failures."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.queries = Counter(
            "llmops_store_queries",
            "HTTP queries served, by kind and outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "llmops_store_query_seconds",
            "Time to serve a query, body included",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "llmops_store_query_errors",
            "Failed queries by ClickHouse error code",
            ["code"],
            registry=registry,
        )
        self.read_rows = Counter(
            "llmops_store_read_rows", "Rows read by queries", registry=registry
        )
        self.written_rows = Counter(
            "llmops_store_written_rows", "Rows written by inserts", registry=registry
        )
        self.in_flight = Gauge(
            "llmops_store_queries_in_flight", "Queries being served now", registry=registry
        )
        self.sessions = Gauge("llmops_store_sessions", "Open HTTP sessions", registry=registry)
