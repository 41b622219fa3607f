"""OTLP request decoding and the otel_traces row layout (the Collector exporter's)."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from llmops.local.otlp_receiver.otlp import (
    COLUMNS,
    JSON,
    PROTOBUF,
    OtlpError,
    decompress,
    encode_response,
    format_double,
    media_type,
    parse_request,
    request_rows,
    value_to_str,
)
from tests.telemetry_kit import memory_tracer_provider


def sdk_spans() -> list[ReadableSpan]:
    """A parent, a child with an event and an error, and a linked span, from the real SDK."""
    provider, exporter = memory_tracer_provider("svc-a")
    tracer = provider.get_tracer("scope-x", "1.2.3")
    with tracer.start_as_current_span(
        "parent", kind=SpanKind.SERVER, attributes={"n": 3, "ok": True, "r": 0.5, "s": "x"}
    ) as parent:
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
            child.add_event("tick", {"i": 1})
            child.set_status(Status(StatusCode.ERROR, "boom"))
        parent_ctx = parent.get_span_context()
    with tracer.start_as_current_span(
        "linked", kind=SpanKind.CONSUMER, links=[Link(parent_ctx, {"why": "batch"})]
    ):
        pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def as_dicts(rows: list[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    return {row[COLUMNS.index("SpanName")]: dict(zip(COLUMNS, row, strict=True)) for row in rows}


def test_rows_follow_the_collector_layout() -> None:
    spans = sdk_spans()
    rows = as_dicts(request_rows(encode_spans(spans)))
    by_name = {s.name: s for s in spans}
    parent, child, linked = rows["parent"], rows["child"], rows["linked"]
    sp = by_name["parent"]
    assert parent["TraceId"] == f"{sp.context.trace_id:032x}"
    assert parent["SpanId"] == f"{sp.context.span_id:016x}"
    assert parent["ParentSpanId"] == ""
    assert child["ParentSpanId"] == parent["SpanId"]
    assert child["TraceId"] == parent["TraceId"]
    assert parent["Timestamp"] == sp.start_time
    assert parent["Duration"] == sp.end_time - sp.start_time  # type: ignore[operator]
    assert (parent["SpanKind"], child["SpanKind"], linked["SpanKind"]) == (
        "Server",
        "Client",
        "Consumer",
    )
    assert (parent["StatusCode"], child["StatusCode"]) == ("Unset", "Error")
    assert child["StatusMessage"] == "boom"
    assert parent["ServiceName"] == "svc-a"
    assert parent["ResourceAttributes"]["service.namespace"] == "llmops"
    assert (parent["ScopeName"], parent["ScopeVersion"]) == ("scope-x", "1.2.3")
    assert parent["SpanAttributes"] == {"n": "3", "ok": "true", "r": "0.5", "s": "x"}
    assert child["Events.Name"] == ["tick"]
    assert child["Events.Attributes"] == [{"i": "1"}]
    assert child["Events.Timestamp"] == [by_name["child"].events[0].timestamp]
    assert linked["Links.TraceId"] == [parent["TraceId"]]
    assert linked["Links.SpanId"] == [parent["SpanId"]]
    assert linked["Links.Attributes"] == [{"why": "batch"}]
    assert parent["Events.Name"] == [] and parent["Links.SpanId"] == []


def test_protobuf_and_gzip_bodies_decode_to_the_same_rows() -> None:
    request = encode_spans(sdk_spans())
    body = request.SerializeToString()
    plain = request_rows(parse_request(body, PROTOBUF))
    assert request_rows(parse_request(gzip.compress(body), PROTOBUF, "gzip")) == plain
    assert request_rows(parse_request(zlib.compress(body), PROTOBUF, "deflate")) == plain
    assert len(plain) == 3


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON as exporters send it: camelCase, ids in hex (protobuf's mapping says base64)."""
    import base64

    document: dict[str, Any] = MessageToDict(request)
    for rs in document["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for item in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in item:
                            item[key] = base64.b64decode(item[key]).hex()
    return document


def test_json_body_with_hex_ids_decodes_like_protobuf() -> None:
    request = encode_spans(sdk_spans())
    document = otlp_json(request)
    first = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(first["traceId"]) == 32  # really hex on the wire
    body = json.dumps(document).encode()
    rows = request_rows(parse_request(body, "application/json; charset=utf-8"))
    assert rows == request_rows(request)


def test_json_accepts_enum_numbers_and_string_int64() -> None:
    body = json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]
                    },
                    "scopeSpans": [
                        {
                            "scope": {"name": "s"},
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": "eee19b7ec3c1b174",
                                    "parentSpanId": "",
                                    "name": "GET /",
                                    "kind": 2,
                                    "startTimeUnixNano": "1544712660000000000",
                                    "endTimeUnixNano": "1544712661000000000",
                                    "attributes": [{"key": "n", "value": {"intValue": "42"}}],
                                    "status": {"code": 2, "message": "x"},
                                    "unknownField": 1,
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()
    (row,) = request_rows(parse_request(body, JSON))
    values = dict(zip(COLUMNS, row, strict=True))
    assert values["TraceId"] == "5b8efff798038103d269b633813fc60c"
    assert values["SpanId"] == "eee19b7ec3c1b174"
    assert values["SpanKind"] == "Server"
    assert values["StatusCode"] == "Error"
    assert values["Duration"] == 1_000_000_000
    assert values["SpanAttributes"] == {"n": "42"}
    assert values["ServiceName"] == "js"


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status"),
    [
        (b"x", "text/plain", None, 415),
        (b"x", None, None, 415),
        (b"\xff\x00garbage", PROTOBUF, None, 400),
        (b"not json", JSON, None, 400),
        (b"[1, 2]", JSON, None, 400),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON, None, 400),
        (b'{"resourceSpans": 5}', JSON, None, 400),
        (b"not gzip", PROTOBUF, "gzip", 400),
        (gzip.compress(b"x" * 100, mtime=0)[:-10], PROTOBUF, "gzip", 400),
        (b"x", PROTOBUF, "br", 415),
    ],
)
def test_bad_requests_are_refused_with_the_right_status(
    body: bytes, content_type: str | None, encoding: str | None, status: int
) -> None:
    with pytest.raises(OtlpError) as caught:
        parse_request(body, content_type, encoding)
    assert caught.value.status == status


def test_decompression_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * 1_000_000)
    assert len(decompress(bomb, "gzip", limit=1_000_000)) == 1_000_000
    with pytest.raises(OtlpError) as caught:
        decompress(bomb, "gzip", limit=999_999)
    assert caught.value.status == 413
    with pytest.raises(OtlpError):
        decompress(b"y" * 11, None, limit=10)


def test_empty_request_has_no_rows() -> None:
    assert request_rows(parse_request(b"", PROTOBUF)) == []
    assert request_rows(parse_request(b"{}", JSON)) == []


def test_response_matches_the_request_encoding() -> None:
    payload, content_type = encode_response(PROTOBUF)
    assert content_type == PROTOBUF
    assert ExportTraceServiceResponse.FromString(payload) == ExportTraceServiceResponse()
    assert encode_response("application/json; charset=utf-8") == (b"{}", JSON)
    assert media_type(" Application/X-Protobuf ; x=1") == PROTOBUF


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.5, "0.5"),
        (1.0, "1"),
        (-2.0, "-2"),
        (1e21, "1000000000000000000000"),
        (1.5e-7, "0.00000015"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_doubles_render_like_go(value: float, text: str) -> None:
    assert format_double(value) == text


def test_value_rendering() -> None:
    assert value_to_str(AnyValue(string_value="é")) == "é"
    assert value_to_str(AnyValue(bool_value=False)) == "false"
    assert value_to_str(AnyValue(int_value=-7)) == "-7"
    assert value_to_str(AnyValue(bytes_value=b"\x00\x01")) == "AAE="
    assert value_to_str(AnyValue()) == ""
    items = [AnyValue(int_value=1), AnyValue(string_value="a")]
    array = AnyValue(array_value=ArrayValue(values=items))
    assert value_to_str(array) == '[1,"a"]'
    kvlist = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="k", value=AnyValue(double_value=2.5)),
                KeyValue(key="b", value=AnyValue(bool_value=True)),
            ]
        )
    )
    assert value_to_str(kvlist) == '{"k":2.5,"b":true}'
