"""`python -m llmops.local.clickhouse_server --data-dir PATH --host H --port N [--password X]`.

Defaults come from Settings (LLMOPS_DATA_DIR, LLMOPS_STORE_PORT, LLMOPS_STORE_PASSWORD); limits
from LLMOPS_STORE_MAX_BODY_BYTES, _MAX_RESULT_BYTES, _ALLOWED_ORIGINS, _ANALYST_MAX_*.
Accounts: DATA_DIR/store-credentials.json, generated on the first start."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from llmops.config import Settings
from llmops.local.clickhouse_server.access import AnalystLimits
from llmops.local.clickhouse_server.server import StoreConfig, serve


def parse_args(argv: list[str] | None = None) -> StoreConfig:
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m llmops.local.clickhouse_server", description=__doc__
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=settings.data_dir,
        help="the engine's data lives in DATA_DIR/clickhouse",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=settings.store_port)
    parser.add_argument(
        "--password",
        default=settings.store_password,
        help="the service user's password instead of the generated one "
        "(prefer LLMOPS_STORE_PASSWORD: argv is public)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=max(4, 2 * (os.cpu_count() or 1)),
        help="threads running engine calls",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error("--port must be in 1..65535")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return StoreConfig(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        password=args.password or None,
        workers=args.workers,
        max_body_bytes=settings.store_max_body_bytes,
        max_result_bytes=settings.store_max_result_bytes,
        allowed_origins=frozenset(settings.store_allowed_origins),
        analyst_limits=AnalystLimits(
            max_execution_time=settings.store_analyst_max_execution_s,
            max_memory_usage=settings.store_analyst_max_memory_bytes,
        ),
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
