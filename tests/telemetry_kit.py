"""Spans kept in memory, for the tests (and the trace benchmark) that look at what was traced.

Kept out of `llmops.telemetry`: no service ever holds its spans in memory.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmops.telemetry.setup import build_resource, setup_telemetry


def install_memory_exporter(provider: TracerProvider | None = None) -> InMemorySpanExporter:
    """Every span ended from now on (by `provider`, else the process' global one) is also kept
    in memory, exported synchronously so a test sees it as soon as it ends."""
    target = provider or setup_telemetry("test")
    exporter = InMemorySpanExporter()
    target.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def memory_tracer_provider(
    service_name: str = "test",
) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A private (not global) provider whose spans land in memory."""
    provider = TracerProvider(resource=build_resource(service_name), shutdown_on_exit=False)
    return provider, install_memory_exporter(provider)
