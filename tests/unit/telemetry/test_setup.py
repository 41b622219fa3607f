"""Telemetry setup from OTEL_* variables: exporters, the resource, the global provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmops.telemetry.setup import build_resource, exporter_names, exporters_from_env
from tests.telemetry_kit import memory_tracer_provider

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- setup from the environment ----------------------------------------------------------------


def test_nothing_is_exported_without_an_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    assert exporter_names() == ["otlp"]
    assert exporters_from_env() == []


def test_otlp_exporter_when_an_endpoint_is_set(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    exporters = exporters_from_env()
    assert [type(e).__name__ for e in exporters] == ["OTLPSpanExporter"]
    assert exporters[0]._endpoint == "http://127.0.0.1:4318/v1/traces"  # type: ignore[attr-defined]


def test_traces_endpoint_is_used_as_is(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h:9/custom")
    (exporter,) = exporters_from_env()
    assert exporter._endpoint == "http://h:9/custom"  # type: ignore[attr-defined]


def test_none_and_console_exporters(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    clean_env.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporters_from_env() == []
    clean_env.setenv("OTEL_TRACES_EXPORTER", "console, otlp")
    exporters = exporters_from_env()
    assert [type(e).__name__ for e in exporters] == ["ConsoleSpanExporter", "OTLPSpanExporter"]
    clean_env.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert exporters_from_env() == []


def test_resource_defaults(clean_env: pytest.MonkeyPatch) -> None:
    attrs = build_resource("router").attributes
    assert attrs["service.name"] == "router"
    assert attrs["service.namespace"] == "llmops"
    other = build_resource("router").attributes
    assert attrs["service.instance.id"] != other["service.instance.id"]  # one per process start
    assert attrs["telemetry.sdk.language"] == "python"


def test_resource_environment_overrides(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "service.namespace=prod,deployment.environment.name=eu"
    )
    clean_env.setenv("OTEL_SERVICE_NAME", "router-eu")
    attrs = build_resource("router").attributes
    assert attrs["service.name"] == "router-eu"
    assert attrs["service.namespace"] == "prod"
    assert attrs["deployment.environment.name"] == "eu"


SETUP_SCRIPT = """
import os
from llmops.telemetry.setup import get_tracer, setup_telemetry, shutdown_telemetry
first = setup_telemetry("unit-setup")
assert setup_telemetry("other") is first, "setup must be idempotent"
with get_tracer().start_as_current_span("hello"):
    pass
shutdown_telemetry()
shutdown_telemetry()
assert setup_telemetry("again") is first, "the global provider is set once per process"
os._exit(0)  # skip atexit: only our shutdown may have flushed the span
"""


def test_setup_is_idempotent_and_shutdown_flushes(clean_env: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARS}
    env.update(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="from-env")
    done = subprocess.run(
        [sys.executable, "-c", SETUP_SCRIPT], env=env, capture_output=True, timeout=60, check=True
    )
    span = json.loads(done.stdout)
    assert span["name"] == "hello"
    assert span["resource"]["attributes"]["service.name"] == "from-env"
    assert span["resource"]["attributes"]["service.namespace"] == "llmops"


def test_sampler_comes_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_TRACES_SAMPLER", "always_off")
    provider, exporter = memory_tracer_provider("sampled")
    with provider.get_tracer("t").start_as_current_span("dropped") as span:
        assert not span.is_recording()
    provider.shutdown()
    assert exporter.get_finished_spans() == ()
