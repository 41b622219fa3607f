"""OTLP/HTTP trace requests -> `otel_traces` rows. Pure: bytes in, tuples out, no IO.

Values are rendered the way the OpenTelemetry Collector's ClickHouse exporter renders them
(hex ids, `Server`/`Error` enum names, attribute values as strings), so rows written here and
rows written by a Collector are indistinguishable to a query.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)
Row = tuple[Any, ...]

# pdata's enum names, as the Collector's exporter writes them.
SPAN_KINDS = {
    Span.SPAN_KIND_UNSPECIFIED: "Unspecified",
    Span.SPAN_KIND_INTERNAL: "Internal",
    Span.SPAN_KIND_SERVER: "Server",
    Span.SPAN_KIND_CLIENT: "Client",
    Span.SPAN_KIND_PRODUCER: "Producer",
    Span.SPAN_KIND_CONSUMER: "Consumer",
}
STATUS_CODES = {
    Status.STATUS_CODE_UNSET: "Unset",
    Status.STATUS_CODE_OK: "Ok",
    Status.STATUS_CODE_ERROR: "Error",
}

# Defaults and bounds for what one request may carry.
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_DECODED_BYTES = 64 * 1024 * 1024


class OtlpError(Exception):
    """A request the receiver must refuse; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- request decoding ------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, encoding: str | None, limit: int = MAX_DECODED_BYTES) -> bytes:
    """Undo Content-Encoding (gzip, deflate or none), refusing bodies that inflate past `limit`."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        data = body
    elif name in ("gzip", "x-gzip", "deflate"):
        # 32+ lets zlib accept either a zlib or a gzip header (deflate senders differ).
        inflater = zlib.decompressobj(wbits=(16 if name != "deflate" else 32) + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            raise OtlpError(400, f"body is not valid {name}: {error}") from error
        if not inflater.eof and not inflater.unconsumed_tail and len(data) <= limit:
            raise OtlpError(400, f"{name} body is truncated")
    else:
        raise OtlpError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    if len(data) > limit:
        raise OtlpError(413, f"decoded body exceeds {limit} bytes")
    return data


def _hex_to_b64(value: object, field: str) -> object:
    if not isinstance(value, str) or not value:
        return value
    try:
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    except ValueError as error:
        raise OtlpError(400, f"{field} {value!r} is not hex") from error


_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


def _ids_hex_to_b64(message: dict[str, Any]) -> None:
    for field in _ID_FIELDS:
        if field in message:
            message[field] = _hex_to_b64(message[field], field)


def _json_items(parent: dict[str, Any], *names: str) -> Iterator[dict[str, Any]]:
    for name in names:
        items = parent.get(name)
        if isinstance(items, list):
            yield from (item for item in items if isinstance(item, dict))


def parse_json_request(data: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON: protobuf's JSON mapping except that ids are hex, not base64."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise OtlpError(400, f"body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise OtlpError(400, "body must be a JSON object")
    for resource_spans in _json_items(document, "resourceSpans", "resource_spans"):
        for scope_spans in _json_items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _json_items(scope_spans, "spans"):
                _ids_hex_to_b64(span)
                for link in _json_items(span, "links"):
                    _ids_hex_to_b64(link)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise OtlpError(400, f"not an OTLP trace request: {error}") from error
    return request


def parse_request(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None = None,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> ExportTraceServiceRequest:
    """Decode one POST /v1/traces body (protobuf or JSON, maybe gzip'd)."""
    kind = media_type(content_type)
    if kind not in (PROTOBUF, JSON):
        raise OtlpError(415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}")
    data = decompress(body, content_encoding, max_decoded_bytes)
    if kind == JSON:
        return parse_json_request(data)
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(data)
    except DecodeError as error:
        raise OtlpError(400, f"body is not an OTLP protobuf trace request: {error}") from error
    return request


def encode_response(content_type: str | None) -> tuple[bytes, str]:
    """The empty ExportTraceServiceResponse, in the request's encoding (full success)."""
    if media_type(content_type) == JSON:
        return b"{}", JSON
    return ExportTraceServiceResponse().SerializeToString(), PROTOBUF


# --- values ----------------------------------------------------------------------------------


def format_double(value: float) -> str:
    """Like Go's strconv.FormatFloat(v, 'f', -1, 64): shortest exact digits, no exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def _raw(value: AnyValue) -> Any:
    """An AnyValue as plain JSON-able data (for arrays and maps)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    return None


def value_to_str(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "double_value":
        return format_double(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which in ("array_value", "kvlist_value"):
        return json.dumps(_raw(value), separators=(",", ":"), ensure_ascii=False)
    return ""


def attributes_map(attributes: Iterable[KeyValue]) -> dict[str, str]:
    """Repeated KeyValue -> {key: value as string}; a repeated key keeps its last value."""
    out: dict[str, str] = {}
    for kv in attributes:
        value = kv.value
        # Most attributes are strings: skip the general conversion's call for them (hot path).
        which = value.WhichOneof("value")
        out[kv.key] = value.string_value if which == "string_value" else value_to_str(value)
    return out


def _hex(raw: bytes) -> str:
    return raw.hex()


# --- rows ------------------------------------------------------------------------------------


def span_row(
    span: Span,
    service_name: str,
    resource_attributes: dict[str, str],
    scope_name: str,
    scope_version: str,
) -> Row:
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    events, links = span.events, span.links
    return (
        start,
        _hex(span.trace_id),
        _hex(span.span_id),
        _hex(span.parent_span_id),
        span.trace_state,
        span.name,
        SPAN_KINDS.get(span.kind, "Unspecified"),
        service_name,
        resource_attributes,
        scope_name,
        scope_version,
        attributes_map(span.attributes),
        end - start if end > start else 0,
        STATUS_CODES.get(span.status.code, "Unset"),
        span.status.message,
        [e.time_unix_nano for e in events],
        [e.name for e in events],
        [attributes_map(e.attributes) for e in events],
        [_hex(link.trace_id) for link in links],
        [_hex(link.span_id) for link in links],
        [link.trace_state for link in links],
        [attributes_map(link.attributes) for link in links],
    )


def request_rows(request: ExportTraceServiceRequest) -> list[Row]:
    """One row per span, in request order (columns as in COLUMNS)."""
    rows: list[Row] = []
    for resource_spans in request.resource_spans:
        resource_attributes = attributes_map(resource_spans.resource.attributes)
        service_name = resource_attributes.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                rows.append(
                    span_row(span, service_name, resource_attributes, scope.name, scope.version)
                )
    return rows
