"""`python -m llmops.local.otlp_receiver --host 127.0.0.1 --port 4318`: the OTLP/HTTP receiver."""

from __future__ import annotations

import argparse
import asyncio
import logging

from llmops.clickhouse.client import login_for, migrate
from llmops.config import Settings
from llmops.local.otlp_receiver.app import create_app, serve
from llmops.local.otlp_receiver.batcher import (
    DEFAULT_FLUSH_MS,
    DEFAULT_MAX_SPANS,
    DEFAULT_MAX_WAITING_SPANS,
    SpanBatcher,
)
from llmops.local.otlp_receiver.otlp import MAX_BODY_BYTES, MAX_DECODED_BYTES
from llmops.local.otlp_receiver.sink import ClickHouseSink
from llmops.runtime import run_service

log = logging.getLogger("llmops.local.otlp_receiver")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m llmops.local.otlp_receiver", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--clickhouse-url", default=None, help="default: CLICKHOUSE_URL")
    parser.add_argument(
        "--batch-spans", type=int, default=DEFAULT_MAX_SPANS, help="spans per insert (max)"
    )
    parser.add_argument(
        "--flush-ms", type=float, default=DEFAULT_FLUSH_MS, help="longest a span waits for company"
    )
    parser.add_argument("--max-waiting-spans", type=int, default=DEFAULT_MAX_WAITING_SPANS)
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    parser.add_argument("--max-decoded-bytes", type=int, default=MAX_DECODED_BYTES)
    parser.add_argument(
        "--migrate", action="store_true", help="create the database and apply migrations first"
    )
    parser.add_argument("--metrics-port", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.batch_spans <= 1_000_000 or not 0 <= args.flush_ms <= 60_000:
        parser.error("--batch-spans must be 1..1000000 and --flush-ms 0..60000")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings()
    url = args.clickhouse_url or settings.clickhouse_url
    login = login_for(url, settings)

    async def run(stop: asyncio.Event) -> None:
        if args.migrate:
            applied = await asyncio.to_thread(lambda: migrate(url, login=login))
            log.info("migrations applied: %s", applied or "none new")
        sink = ClickHouseSink(url, login=login)
        waiting = max(args.max_waiting_spans, args.batch_spans)
        batcher = SpanBatcher(sink, args.batch_spans, args.flush_ms / 1000, waiting)
        app = create_app(batcher, args.max_body_bytes, args.max_decoded_bytes)
        try:
            await serve(app, args.host, args.port, stop)
        finally:
            sink.close()

    run_service("traces", run, args.metrics_port, metrics_host=settings.metrics_host)


if __name__ == "__main__":
    main()
