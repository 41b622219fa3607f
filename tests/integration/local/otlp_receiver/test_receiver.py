"""The trace receiver end to end: the real SDK's OTLP/HTTP exporter ->
`python -m llmops.local.otlp_receiver`
-> the store server (real ClickHouse engine) -> otel_traces, read back with SQL."""

from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmops.cli.traces import TRACE_COLUMNS, TRACE_QUERY, rows_as_dicts, trace_tree
from llmops.clickhouse.client import apply_migrations, connect, ensure_database
from llmops.local.otlp_receiver.launcher import start_traces, stop_traces
from llmops.local.procs import free_port, wait_until
from llmops.telemetry.conventions import genai_request_attributes, genai_response_attributes
from llmops.telemetry.setup import build_resource, exporters_from_env
from tests.telemetry_kit import memory_tracer_provider

pytestmark = pytest.mark.integration

PROTOBUF = "application/x-protobuf"


def fresh_database_url(store_url: str) -> str:
    return f"{store_url}/t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db_url(store_url: str) -> Iterator[str]:
    url = fresh_database_url(store_url)
    client = ensure_database(url)
    apply_migrations(client)
    yield url
    client.close()


@pytest.fixture
def receiver(db_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start_traces(
        "127.0.0.1", port, db_url, tmp_path / "traces.log", extra_args=["--flush-ms", "20"]
    )
    yield f"http://127.0.0.1:{port}"
    assert stop_traces(proc) == 0, (tmp_path / "traces.log").read_text()


def query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    client = connect(url)
    try:
        result = client.query(sql, parameters=params)
        return rows_as_dicts(result.column_names, result.result_rows)
    finally:
        client.close()


def post(
    url: str, body: bytes, content_type: str, encoding: str | None = None
) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    request = urllib.request.Request(f"{url}/v1/traces", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def make_spans() -> list[ReadableSpan]:
    provider, exporter = memory_tracer_provider("unit-batch")
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root"), tracer.start_as_current_span("leaf"):
        pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def test_sdk_exporter_spans_land_in_clickhouse(
    receiver: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Configured the way services are: only through OTEL_* variables.
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    provider = TracerProvider(resource=build_resource("it-router"), shutdown_on_exit=False)
    (exporter,) = exporters_from_env()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("llmops.it", "0.1")
    with (
        tracer.start_as_current_span(
            "process llm.requests",
            kind=SpanKind.CONSUMER,
            attributes={"messaging.destination.name": "llm.requests", "messaging.kafka.offset": 7},
        ) as parent,
        tracer.start_as_current_span(
            "chat gemma-3-270m",
            kind=SpanKind.CLIENT,
            attributes=genai_request_attributes("chat", "local", "gemma-3-270m", 32, 0.5, 0.9),
        ) as child,
    ):
        child.add_event("first_token", {"gen_ai.response.time_to_first_chunk": 0.125})
        child.set_attributes(genai_response_attributes(5, 9, ["stop"], "gemma-3-270m", "r-1"))
        child.set_status(Status(StatusCode.ERROR, "deadline"))
    # The receiver answers only after the insert, so a completed flush means rows are stored.
    assert provider.force_flush(30_000)
    provider.shutdown()

    trace_id = f"{parent.get_span_context().trace_id:032x}"
    rows = query(
        db_url,
        "SELECT *, toUnixTimestamp64Nano(Timestamp) AS start_ns FROM otel_traces "
        "WHERE TraceId = {t:String} ORDER BY start_ns",
        t=trace_id,
    )
    assert [r["SpanName"] for r in rows] == ["process llm.requests", "chat gemma-3-270m"]
    stored_parent, stored_child = rows
    sdk_parent, sdk_child = parent, child
    assert stored_parent["SpanId"] == f"{sdk_parent.get_span_context().span_id:016x}"
    assert stored_parent["ParentSpanId"] == ""
    assert stored_child["SpanId"] == f"{sdk_child.get_span_context().span_id:016x}"
    assert stored_child["ParentSpanId"] == stored_parent["SpanId"]
    for stored, sdk in ((stored_parent, sdk_parent), (stored_child, sdk_child)):
        assert isinstance(sdk, ReadableSpan)
        assert sdk.start_time is not None and sdk.end_time is not None
        assert stored["start_ns"] == sdk.start_time
        assert stored["Duration"] == sdk.end_time - sdk.start_time
        assert stored["ServiceName"] == "it-router"
        assert stored["ScopeName"] == "llmops.it"
        assert stored["ResourceAttributes"]["service.namespace"] == "llmops"
    assert stored_parent["SpanKind"] == "Consumer"
    assert stored_parent["SpanAttributes"]["messaging.kafka.offset"] == "7"
    assert stored_child["SpanKind"] == "Client"
    assert stored_child["StatusCode"] == "Error"
    assert stored_child["StatusMessage"] == "deadline"
    attrs = stored_child["SpanAttributes"]
    assert attrs["gen_ai.request.model"] == "gemma-3-270m"
    assert attrs["gen_ai.request.temperature"] == "0.5"
    assert attrs["gen_ai.usage.output_tokens"] == "9"
    assert attrs["gen_ai.response.finish_reasons"] == '["stop"]'
    assert stored_child["Events.Name"] == ["first_token"]
    assert stored_child["Events.Attributes"] == [{"gen_ai.response.time_to_first_chunk": "0.125"}]

    tree = trace_tree(query(db_url, TRACE_QUERY, trace_id=trace_id))
    assert tree.is_connected(), tree.render()
    assert [n.name for _, n in tree.walk()] == ["process llm.requests", "chat gemma-3-270m"]
    lookup = query(
        db_url,
        "SELECT count() AS n FROM otel_traces_trace_id_ts WHERE TraceId = {t:String}",
        t=trace_id,
    )
    assert lookup[0]["n"] >= 1
    assert tuple(query(db_url, TRACE_QUERY, trace_id=trace_id)[0]) == TRACE_COLUMNS


def test_a_resent_batch_is_not_doubled(receiver: str, db_url: str) -> None:
    spans = make_spans()
    body = encode_spans(spans).SerializeToString()
    assert post(receiver, body, PROTOBUF)[0] == 200
    assert post(receiver, gzip.compress(body), PROTOBUF, "gzip")[0] == 200
    trace_id = f"{spans[0].context.trace_id:032x}"
    (counted,) = query(
        db_url,
        "SELECT count() AS n, uniqExact(SpanId) AS ids FROM otel_traces FINAL "
        "WHERE TraceId = {t:String}",
        t=trace_id,
    )
    assert (counted["n"], counted["ids"]) == (2, 2)


def test_json_export_and_response(receiver: str, db_url: str) -> None:
    trace_id = uuid.uuid4().hex
    start = time.time_ns()  # a recent span: the table's TTL drops ones older than 30 days
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "browser"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "00f067aa0ba902b7",
                                "name": "click",
                                "kind": "SPAN_KIND_CLIENT",
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 250_000_000),
                            }
                        ],
                    }
                ],
            }
        ]
    }
    body = gzip.compress(json.dumps(document).encode())
    status, body = post(receiver, body, "application/json", "gzip")
    assert (status, json.loads(body)) == (200, {})
    (row,) = query(db_url, "SELECT * FROM otel_traces WHERE TraceId = {t:String}", t=trace_id)
    assert (row["SpanName"], row["SpanKind"], row["ServiceName"]) == ("click", "Client", "js")
    assert row["Duration"] == 250_000_000


def test_bad_requests_are_refused_and_store_nothing(receiver: str, db_url: str) -> None:
    status, body = post(receiver, b"\xff\xfe garbage", PROTOBUF)
    assert status == 400
    assert body  # a google.rpc.Status explaining why
    assert post(receiver, b"{}", "text/plain")[0] == 415
    assert post(receiver, b"not gzip", PROTOBUF, "gzip")[0] == 400
    assert query(db_url, "SELECT count() AS n FROM otel_traces")[0]["n"] == 0
    assert health(receiver)["status"] == "ok"


def test_receiver_started_before_the_table_answers_503_then_recovers(
    store_url: str, tmp_path: Path
) -> None:
    # `llmops up` starts the receiver before migrations run: spans must not be lost for it.
    url = fresh_database_url(store_url)
    port = free_port()
    proc = start_traces(
        "127.0.0.1", port, url, tmp_path / "traces.log", extra_args=["--flush-ms", "0"]
    )
    try:
        receiver = f"http://127.0.0.1:{port}"
        body = encode_spans(make_spans()).SerializeToString()
        status, _ = post(receiver, body, PROTOBUF)
        assert status == 503  # retryable: the exporter tries again later
        client = ensure_database(url)
        apply_migrations(client)
        client.close()
        assert post(receiver, body, PROTOBUF)[0] == 200
        assert query(url, "SELECT count() AS n FROM otel_traces")[0]["n"] == 2
    finally:
        stop_traces(proc)


def test_stopping_writes_queued_spans_and_answers_their_requests(
    db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    # Nothing would be written for a minute: only the shutdown drain can write these spans.
    proc = start_traces(
        "127.0.0.1",
        port,
        db_url,
        tmp_path / "traces.log",
        extra_args=["--flush-ms", "60000", "--batch-spans", "100000"],
    )
    receiver = f"http://127.0.0.1:{port}"
    answers: list[int] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            post(receiver, encode_spans(make_spans()).SerializeToString(), PROTOBUF)[0]
        )
    )
    try:
        sender.start()
        wait_until(lambda: health(receiver)["waiting_spans"] == 2, 30, "the spans to queue")
    finally:
        code = stop_traces(proc)
        sender.join(30)
    assert code == 0
    assert answers == [200]
    assert query(db_url, "SELECT count() AS n FROM otel_traces")[0]["n"] == 2


def health(receiver: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{receiver}/healthz", timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def test_receiver_metrics_count_requests_and_spans(db_url: str, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    proc = start_traces(
        "127.0.0.1",
        port,
        db_url,
        tmp_path / "traces.log",
        extra_args=["--metrics-port", str(metrics_port)],
    )
    try:
        receiver = f"http://127.0.0.1:{port}"
        assert post(receiver, encode_spans(make_spans()).SerializeToString(), PROTOBUF)[0] == 200
        assert post(receiver, b"junk", PROTOBUF)[0] == 400
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        stop_traces(proc)
    assert 'llmops_trace_export_requests_total{status="200"} 1.0' in text
    assert 'llmops_trace_export_requests_total{status="400"} 1.0' in text
    assert "llmops_trace_spans_stored_total 2.0" in text
