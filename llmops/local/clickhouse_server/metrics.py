"""Prometheus metrics of the store: what an SRE needs to see the database's load and failures."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmops.telemetry.metrics import latency_buckets

# A query: from a cached point read (under a ms) to a large scan (tens of seconds).
_LATENCY_BUCKETS = latency_buckets(30.0, sub_millisecond=True)


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
