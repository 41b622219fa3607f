"""Tracing set up only from standard `OTEL_*` variables.

Every service calls `setup_telemetry(name)` once at start and `shutdown_telemetry()` at exit.
Nothing is exported unless an OTLP endpoint (or `OTEL_TRACES_EXPORTER=console`) is configured,
so tests and laptops pay only for in-process spans.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from importlib import metadata

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.semconv.attributes import service_attributes as svc
from opentelemetry.trace import Tracer

from llmops.telemetry.conventions import Attributes

log = logging.getLogger(__name__)

NAMESPACE = "llmops"
TRACER_NAME = "llmops"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_shut_down = False


def _package_version() -> str:
    try:
        return metadata.version("llmops-streams")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_resource(service_name: str) -> Resource:
    """Our defaults, overridden by OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME."""
    defaults: Attributes = {
        svc.SERVICE_NAME: service_name,
        svc.SERVICE_NAMESPACE: NAMESPACE,
        svc.SERVICE_VERSION: _package_version(),
        svc.SERVICE_INSTANCE_ID: str(uuid.uuid4()),
    }
    # Resource.create lets the given attributes win over the environment; the spec wants the
    # operator's environment to win, so merge the environment on top again.
    return Resource.create(defaults).merge(OTELResourceDetector().detect())


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def otlp_endpoint_configured() -> bool:
    return _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") is not None


def exporter_names() -> list[str]:
    """OTEL_TRACES_EXPORTER as a list; `none` anywhere means no exporter at all."""
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    return [] if "none" in names else names


def _otlp_exporter(fallback_endpoint: str | None = None) -> SpanExporter:
    protocol = _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol not in (None, "http/protobuf"):
        log.warning("OTLP protocol %r is not installed here; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The exporter itself reads endpoint, headers, timeout, compression and TLS from OTEL_*.
    if fallback_endpoint is not None and not otlp_endpoint_configured():
        # A base URL, like OTEL_EXPORTER_OTLP_ENDPOINT: the signal's path is appended.
        return OTLPSpanExporter(endpoint=fallback_endpoint.rstrip("/") + "/v1/traces")
    return OTLPSpanExporter()


def exporters_from_env(fallback_endpoint: str | None = None) -> list[SpanExporter]:
    """`fallback_endpoint`: the OTLP base URL to use when no OTEL_* endpoint is set."""
    explicit = "OTEL_TRACES_EXPORTER" in os.environ
    exporters: list[SpanExporter] = []
    for name in exporter_names():
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            # The spec's default exporter is otlp to localhost:4318; we export only when an
            # endpoint is set (or otlp was asked for by name), so an idle laptop logs no
            # connection errors.
            if otlp_endpoint_configured() or explicit or fallback_endpoint:
                exporters.append(_otlp_exporter(fallback_endpoint))
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER entry %r ignored", name)
    return exporters


def setup_telemetry(service_name: str, fallback_endpoint: str | None = None) -> TracerProvider:
    """Install the global tracer provider for this process (once; later calls return it).

    `fallback_endpoint` (an OTLP/HTTP base URL) is where spans go when no OTEL_* endpoint
    is set: the CLI passes the embedded trace receiver's address.

    The global provider cannot be replaced once set, so this is once per process, even after
    `shutdown_telemetry()`."""
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        provider = TracerProvider(resource=build_resource(service_name))
        for exporter in exporters_from_env(fallback_endpoint):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _provider = provider
        return provider


def shutdown_telemetry(timeout_ms: int = 5000) -> None:
    """Flush what is buffered and stop exporting (safe to call more than once)."""
    global _shut_down
    with _lock:
        provider = None if _shut_down else _provider
        _shut_down = _shut_down or provider is not None
    if provider is not None:
        provider.force_flush(timeout_ms)
        provider.shutdown()


def get_tracer(name: str = TRACER_NAME) -> Tracer:
    return trace.get_tracer(name, _package_version())
