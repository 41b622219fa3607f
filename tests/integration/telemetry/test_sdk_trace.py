"""The SDK's span is the root of the request's trace and lasts from the send to the final
reply, so the latency the app saw is in the trace (real broker, router and pool in process)."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from llmops.config import FakePool
from llmops.sdk import LLMOpsClient
from services.inference.engines.fake import FakeEngine, FakeEngineConfig
from tests.integration.platform import running_platform
from tests.telemetry_kit import install_memory_exporter

pytestmark = pytest.mark.integration


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        span = by_id[parent.span_id]
        names.append(span.name)
        parent = span.parent
    return names


async def test_root_span_covers_the_reply_and_parents_every_hop(bootstrap: str) -> None:
    exporter = install_memory_exporter()  # the global provider: router and pool record too
    pool = FakePool(name=f"slow-{uuid.uuid4().hex[:6]}", model="fake")
    engine = FakeEngine(model="fake", config=FakeEngineConfig(ttft_ms=50, tpot_ms=20))
    async with (
        running_platform(bootstrap, [pool], {pool.name: engine}),
        LLMOpsClient(bootstrap, app="t") as client,
    ):
        request = client.build_request([{"role": "user", "content": "a b c d"}], max_tokens=4)
        result = await client.wait(request.request_id, await client.submit(request), 30)
    spans = exporter.get_finished_spans()
    roots = [
        s
        for s in spans
        if s.parent is None and s.attributes.get("llmops.request_id") == request.request_id
    ]
    assert [(r.name, r.kind) for r in roots] == [("chat", SpanKind.CLIENT)]
    root = roots[0]
    in_trace = {s.context.span_id: s for s in spans if s.context.trace_id == root.context.trace_id}
    hops = {s.name: _ancestors(s, in_trace) for s in in_trace.values()}
    assert hops["send llm.requests"] == ["chat"]
    assert hops["route llm.requests"] == ["send llm.requests", "chat"]
    assert hops["chat fake"][-2:] == ["send llm.requests", "chat"]
    assert root.end_time is not None and root.start_time is not None
    # From the send to the reply: longer than the generation the pool timed inside it.
    assert (root.end_time - root.start_time) / 1e6 > result.timings.total_ms > 0
    assert root.attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    assert root.status.status_code is StatusCode.UNSET


async def test_error_reply_marks_the_root_span(bootstrap: str) -> None:
    exporter = install_memory_exporter()
    async with running_platform(bootstrap), LLMOpsClient(bootstrap) as client:
        request = client.build_request(prompt=f"nope-{uuid.uuid4().hex[:6]}")
        result = await client.wait(request.request_id, await client.submit(request), 30)
    assert result.error is not None
    [root] = [
        s
        for s in exporter.get_finished_spans()
        if s.parent is None and s.attributes.get("llmops.request_id") == request.request_id
    ]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["error.type"] == "invalid_request"
