"""Span rows as the Arrow table inserted into otel_traces (explicit ClickHouse-ready types)."""

from __future__ import annotations

import pyarrow as pa
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import Link

from llmops.local.otlp_receiver.otlp import COLUMNS, request_rows
from llmops.local.otlp_receiver.sink import ARROW_SCHEMA, rows_to_arrow
from tests.telemetry_kit import memory_tracer_provider


def rows() -> list[tuple[object, ...]]:
    provider, exporter = memory_tracer_provider("svc")
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("a", attributes={"k": "v"}) as a:
        a.add_event("e", {"n": 2})
        ctx = a.get_span_context()
    with tracer.start_as_current_span("b", links=[Link(ctx)]):
        pass
    provider.shutdown()
    return request_rows(encode_spans(list(exporter.get_finished_spans())))


def test_table_has_the_otel_traces_columns_and_types() -> None:
    table = rows_to_arrow(rows())
    assert table.column_names == list(COLUMNS)
    assert table.schema == ARROW_SCHEMA
    assert table.schema.field("Timestamp").type == pa.timestamp("ns", tz="UTC")
    string_map = pa.map_(pa.string(), pa.string())
    assert table.schema.field("Events.Attributes").type == pa.list_(string_map)
    assert table.num_rows == 2


def test_values_survive_the_conversion() -> None:
    source = rows()
    arrow = rows_to_arrow(source)
    a, b = (dict(zip(COLUMNS, r, strict=True)) for r in source)
    first, second = arrow.to_pylist()
    # Nanoseconds kept exactly (read back as integers, not lossy datetimes).
    assert arrow.column("Timestamp").cast(pa.int64()).to_pylist()[0] == a["Timestamp"]
    events = arrow.column("Events.Timestamp").combine_chunks().flatten().cast(pa.int64())
    assert events.to_pylist() == a["Events.Timestamp"]
    assert first["Duration"] == a["Duration"]
    assert first["SpanAttributes"] == [("k", "v")]
    assert first["Events.Name"] == ["e"]
    assert first["Events.Attributes"] == [[("n", "2")]]
    assert second["Links.SpanId"] == [a["SpanId"]] == b["Links.SpanId"]


def test_an_empty_batch_is_an_empty_table() -> None:
    table = rows_to_arrow([])
    assert table.num_rows == 0
    assert table.schema == ARROW_SCHEMA
