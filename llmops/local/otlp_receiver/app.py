"""OTLP/HTTP trace receiver: POST /v1/traces -> otel_traces rows -> batched inserts.

Statuses follow the OTLP/HTTP spec: 200 with an empty ExportTraceServiceResponse once the
spans are written; 400/413/415 for a request that will never succeed (not retried);
503 with Retry-After when the insert failed or too much is waiting (the exporter retries).
Error bodies are a google.rpc.Status in the request's encoding.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from google.rpc.status_pb2 import Status as RpcStatus
from prometheus_client import Counter

from llmops.local.otlp_receiver.batcher import Overloaded, SpanBatcher
from llmops.local.otlp_receiver.otlp import (
    JSON,
    MAX_BODY_BYTES,
    MAX_DECODED_BYTES,
    PROTOBUF,
    OtlpError,
    encode_response,
    media_type,
    parse_request,
    request_rows,
)

log = logging.getLogger(__name__)

BATCHER = web.AppKey("batcher", SpanBatcher)
MAX_DECODED = web.AppKey("max_decoded_bytes", int)
RETRY_AFTER_S = 1
REQUESTS = Counter(
    "trace_export_requests",
    "OTLP export requests answered, by HTTP status",
    ["status"],
    namespace="llmops",
)
SPANS_STORED = Counter("trace_spans_stored", "Spans written to otel_traces", namespace="llmops")
# gRPC codes in google.rpc.Status bodies.
_INVALID_ARGUMENT, _UNAVAILABLE = 3, 14


def _error(request: web.Request, status: int, message: str) -> web.Response:
    REQUESTS.labels(str(status)).inc()
    rpc_code = _UNAVAILABLE if status >= 500 else _INVALID_ARGUMENT
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status in (429, 503) else None
    if media_type(request.headers.get("Content-Type")) == JSON:
        body = json.dumps({"code": rpc_code, "message": message}).encode()
        return web.Response(status=status, body=body, content_type=JSON, headers=headers)
    body = RpcStatus(code=rpc_code, message=message).SerializeToString()
    return web.Response(status=status, body=body, content_type=PROTOBUF, headers=headers)


async def export_traces(request: web.Request) -> web.Response:
    content_type = request.headers.get("Content-Type")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(request, 413, f"body exceeds {request.app._client_max_size} bytes")
    try:
        parsed = parse_request(
            body, content_type, request.headers.get("Content-Encoding"), request.app[MAX_DECODED]
        )
        rows = request_rows(parsed)
    except OtlpError as error:
        return _error(request, error.status, error.message)
    try:
        await request.app[BATCHER].submit(rows)
    except Overloaded as error:
        return _error(request, 503, str(error))
    except Exception as error:  # the insert failed: tell the exporter to retry later
        log.warning("writing %d spans failed: %s", len(rows), error)
        return _error(request, 503, f"could not store spans: {error}")
    REQUESTS.labels("200").inc()
    SPANS_STORED.inc(len(rows))
    payload, response_type = encode_response(content_type)
    return web.Response(body=payload, content_type=response_type)


async def health(request: web.Request) -> web.Response:
    batcher = request.app[BATCHER]
    return web.json_response(
        {
            "status": "ok",
            "spans_written": batcher.spans_written,
            "inserts": batcher.inserts,
            "waiting_spans": batcher.waiting_spans,
        }
    )


def create_app(
    batcher: SpanBatcher,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)
    app[BATCHER] = batcher
    app[MAX_DECODED] = max_decoded_bytes
    app.router.add_post("/v1/traces", export_traces)
    app.router.add_get("/healthz", health)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.close()  # already closed by `serve`; this covers other runners

    app.cleanup_ctx.append(lifecycle)
    return app


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then drain the batcher (cleanup) and return."""
    # Bodies are decompressed by us, with a bound (aiohttp's own inflating has none).
    runner = web.AppRunner(app, auto_decompress=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("OTLP trace receiver on http://%s:%d/v1/traces", host, port)
    try:
        await stop.wait()
    finally:
        # Write what is queued first: the requests waiting on it get their answer before the
        # server stops (which waits for in-flight requests); later arrivals get a 503 and retry.
        await app[BATCHER].close()
        await runner.cleanup()
