"""How many spans/s the trace receiver ingests into ClickHouse (store server over chDB).

Real parts only: `python -m llmops.local.clickhouse_server` (chDB) and
`python -m llmops.local.otlp_receiver` as
subprocesses, HTTP clients posting OTLP requests built by the SDK's own encoder. A request
counts when it is answered 200, which the receiver does only after the insert, so spans/s is
spans *stored* per second. Every run ends by checking that otel_traces holds exactly the spans
sent. Clients share the machine's cores with the receiver and the store.

    .venv/bin/python bench/traces.py [--spans 100000]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind

# Run as a script: the test kit (memory spans) comes from the checkout itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmops.clickhouse.client import connect, migrate
from llmops.local.clickhouse_server.launcher import service_url, start_store, stop_store
from llmops.local.otlp_receiver.batcher import DEFAULT_FLUSH_MS
from llmops.local.otlp_receiver.launcher import start_traces, stop_traces
from llmops.local.procs import free_port
from llmops.telemetry.conventions import (
    genai_request_attributes,
    genai_response_attributes,
    messaging_attributes,
)
from tests.telemetry_kit import memory_tracer_provider


@dataclass
class Case:
    encoding: str  # protobuf | protobuf+gzip | json
    spans_per_request: int
    clients: int
    flush_ms: float = DEFAULT_FLUSH_MS

    @property
    def name(self) -> str:
        return (
            f"{self.encoding}, {self.spans_per_request}/req, {self.clients} clients, "
            f"flush {self.flush_ms:g} ms"
        )


CASES = [
    Case("protobuf", 512, 1),
    Case("protobuf", 512, 4),
    Case("protobuf", 512, 4, flush_ms=0),
    Case("protobuf", 512, 4, flush_ms=20),
    Case("protobuf+gzip", 512, 4),
    Case("json", 512, 4),
    Case("protobuf", 64, 8),
    Case("protobuf", 2048, 4),
]
HEADLINE = CASES[1]
CONSUMER_ATTRIBUTES = messaging_attributes("process", "llm.requests", 3, 12345, "user-1", "router")
GENAI_ATTRIBUTES = genai_request_attributes("chat", "local", "gemma-3-270m", 64, 0.7, 0.9)


def template_request(n: int) -> ExportTraceServiceRequest:
    """`n` realistic spans (one request per trace: router -> inference with GenAI attributes)."""
    provider, exporter = memory_tracer_provider("bench")
    tracer = provider.get_tracer("llmops.bench", "0.1")
    while len(exporter.get_finished_spans()) < n:
        with (
            tracer.start_as_current_span(
                "process llm.requests", kind=SpanKind.CONSUMER, attributes=CONSUMER_ATTRIBUTES
            ),
            tracer.start_as_current_span(
                "chat gemma-3-270m", kind=SpanKind.CLIENT, attributes=GENAI_ATTRIBUTES
            ) as span,
        ):
            span.add_event("first_token")
            span.set_attributes(genai_response_attributes(21, 64, ["length"], "gemma", "r"))
    spans = list(exporter.get_finished_spans())[:n]
    provider.shutdown()
    return encode_spans(spans)


def bodies(case: Case, total: int) -> list[bytes]:
    """Pre-encoded request bodies with unique trace/span ids (so no span dedupes away)."""
    template = template_request(case.spans_per_request)
    out = []
    for _ in range(max(1, total // case.spans_per_request)):
        request = ExportTraceServiceRequest()
        request.CopyFrom(template)
        prefix = uuid.uuid4().bytes[:8]
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    span.trace_id = prefix + span.trace_id[8:]
                    for link in span.links:
                        link.trace_id = prefix + link.trace_id[8:]
        if case.encoding == "json":
            document = MessageToDict(request)
            for rs in document["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        for key in ("traceId", "spanId", "parentSpanId"):
                            if key in span:
                                span[key] = base64.b64decode(span[key]).hex()
            out.append(json.dumps(document).encode())
        else:
            body = request.SerializeToString()
            out.append(gzip.compress(body, 1) if case.encoding.endswith("gzip") else body)
    return out


def post_all(port: int, case: Case, payloads: list[bytes]) -> float:
    headers = {
        "Content-Type": "application/json" if case.encoding == "json" else "application/x-protobuf"
    }
    if case.encoding.endswith("gzip"):
        headers["Content-Encoding"] = "gzip"
    chunks = [payloads[i :: case.clients] for i in range(case.clients)]
    errors: list[str] = []

    def client(mine: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for body in mine:
            conn.request("POST", "/v1/traces", body, headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return elapsed


def run_case(case: Case, store_base: str, spans: int, log_dir: Path) -> tuple[int, float]:
    """(spans sent, spans/s stored) for one case on a fresh database and receiver."""
    url = f"{store_base}/bench_{uuid.uuid4().hex[:8]}"
    migrate(url)
    payloads = bodies(case, spans)
    sent = len(payloads) * case.spans_per_request
    port = free_port()
    receiver = start_traces(
        "127.0.0.1",
        port,
        url,
        log_dir / "traces.log",
        extra_args=["--flush-ms", str(case.flush_ms)],
    )
    try:
        elapsed = post_all(port, case, payloads)
    finally:
        stop_traces(receiver)
    check = connect(url)
    stored = check.query("SELECT count() FROM otel_traces FINAL").result_rows[0][0]
    check.close()
    if stored != sent:
        raise RuntimeError(f"{case.name}: sent {sent} spans, stored {stored}")
    return sent, sent / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000, help="spans per case")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (median shown)")
    parser.add_argument("--headline-only", action="store_true")
    args = parser.parse_args()
    cases = [HEADLINE] if args.headline_only else CASES
    results: list[tuple[Case, int, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-traces-") as tmp:
        tmp_path = Path(tmp)
        store_port = free_port()
        store = start_store(
            tmp_path / "data", "127.0.0.1", store_port, None, tmp_path / "store.log"
        )
        store_base = service_url(tmp_path / "data", "127.0.0.1", store_port)
        try:
            for case in cases:
                rates = []
                for _ in range(args.repeat):
                    sent, rate = run_case(case, store_base, args.spans, tmp_path)
                    rates.append(rate)
                    print(f"{case.name}: {rate:,.0f} spans/s", file=sys.stderr)
                results.append((case, sent, rates))
        finally:
            stop_store(store)
    print(
        f"{'encoding':14} {'spans/req':>9} {'clients':>7} {'flush ms':>8} "
        f"{'spans':>7} {'spans/s':>9} {'min':>8} {'max':>8}"
    )
    for case, sent, rates in results:
        print(
            f"{case.encoding:14} {case.spans_per_request:>9} {case.clients:>7} "
            f"{case.flush_ms:>8g} {sent:>7} {statistics.median(rates):>9,.0f} "
            f"{min(rates):>8,.0f} {max(rates):>8,.0f}"
        )
    headline = next(statistics.median(r) for case, _, r in results if case == HEADLINE)
    print(f"RESULT spans_per_s={headline:.0f}")


if __name__ == "__main__":
    main()
