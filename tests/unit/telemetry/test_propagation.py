"""Trace headers from any producer: hostile ones give an empty context and no OTel warnings."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import baggage, trace
from opentelemetry.context import Context

from llmops.telemetry.propagation import extract_context, inject_context

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
GOOD_PARENT = f"00-{TRACE_ID}-{SPAN_ID}-01".encode()


def span_context(context: Context) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()


# Each made OpenTelemetry's propagators log a warning per record (found by the fuzz test).
HOSTILE = {
    "traceparent too long": [("traceparent", b"00-" + b"a" * 600)],
    "traceparent malformed": [("traceparent", b"00-xyz-" + SPAN_ID.encode() + b"-01")],
    "traceparent version ff": [("traceparent", f"ff-{TRACE_ID}-{SPAN_ID}-01".encode())],
    "traceparent zero trace id": [("traceparent", f"00-{'0' * 32}-{SPAN_ID}-01".encode())],
    "traceparent zero span id": [("traceparent", f"00-{TRACE_ID}-{'0' * 16}-01".encode())],
    "traceparent with a tail": [("traceparent", GOOD_PARENT + b"-extra")],
    "baggage too long": [("baggage", b"k=" + b"v" * 9000)],
    "baggage too many members": [("baggage", b",".join(b"k%d=v" % i for i in range(200)))],
    "baggage member too long": [("baggage", b"k=" + b"v" * 5000)],
    "baggage not a member": [("baggage", b"vvvvvvvvvvvvvvvvvvvvvv")],
    "baggage bad value": [("baggage", b'k="quoted"')],
    "baggage not ascii": [("baggage", "k=caf\u00e9".encode())],
    "baggage not utf-8": [("baggage", b"k=\xff\xfe")],
}


@pytest.mark.parametrize("headers", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_trace_headers_give_an_empty_context_quietly(
    headers: list[tuple[str, bytes | None]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        context = extract_context(headers)
    assert not span_context(context).is_valid
    assert baggage.get_all(context) == {}
    otel = [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")]
    assert otel == []


def test_a_bad_tracestate_is_dropped_and_its_traceparent_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = [("traceparent", GOOD_PARENT), ("tracestate", b"Not A Member," * 40)]
    with caplog.at_level(logging.DEBUG):
        extracted = span_context(extract_context(headers))
    assert extracted.trace_id == int(TRACE_ID, 16)
    assert len(extracted.trace_state) == 0
    assert [r for r in caplog.records if r.name.startswith("opentelemetry")] == []


def test_valid_trace_headers_still_extract(caplog: pytest.LogCaptureFixture) -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("Traceparent", GOOD_PARENT),
        ("tracestate", b"vendor=v1,tenant@sys=x y"),
        ("baggage", b"user=alice, tier = gold ;p=1;flag, empty="),
    ]
    with caplog.at_level(logging.DEBUG):
        context = extract_context(headers)
    extracted = span_context(context)
    assert (extracted.trace_id, extracted.span_id) == (int(TRACE_ID, 16), int(SPAN_ID, 16))
    assert dict(extracted.trace_state) == {"vendor": "v1", "tenant@sys": "x y"}
    # OTel keeps a member's properties in its value.
    assert baggage.get_all(context) == {"user": "alice", "tier": "gold ;p=1;flag", "empty": ""}
    assert caplog.records == []


def test_what_inject_writes_extracts_whole() -> None:
    parent = trace.SpanContext(int(TRACE_ID, 16), int(SPAN_ID, 16), True, trace.TraceFlags(1))
    context = baggage.set_baggage(
        "k", "a value", trace.set_span_in_context(trace.NonRecordingSpan(parent))
    )
    again = extract_context(inject_context([], context))
    assert span_context(again).span_id == int(SPAN_ID, 16)
    assert baggage.get_all(again) == {"k": "a value"}
