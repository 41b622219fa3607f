"""`python -m streams`: the metrics worker (faust), configured from Settings / the environment.

SIGTERM and SIGINT stop it cleanly: faust stops the agents and commits what was acked.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import time
from collections.abc import Callable

import faust

from llmops.clickhouse.client import login_for
from llmops.config import Settings
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.topics import ensure_topics
from llmops.runtime import require_trust_settings
from llmops.telemetry.metrics import start_metrics_server
from llmops.telemetry.setup import setup_telemetry, shutdown_telemetry
from schemas.topics import STREAMS_APP_ID
from streams import SERVICE
from streams.sink import Backoff
from streams.worker import WorkerOptions, build_worker, topics_needed

log = logging.getLogger("streams")

APP_ID_ENV = "LLMOPS_STREAMS_APP_ID"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m streams", description=__doc__)
    parser.add_argument(
        "--app-id",
        default=os.environ.get(APP_ID_ENV, STREAMS_APP_ID),
        help=f"faust app id = consumer group (env {APP_ID_ENV})",
    )
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port, 0: off")
    parser.add_argument(
        "--migrate", action="store_true", help="create the database and apply migrations first"
    )
    parser.add_argument("--log-level", default=os.environ.get("LLMOPS_LOG_LEVEL", "info"))
    return parser.parse_args(argv)


def retry_until_done(what: str, action: Callable[[], object], attempts: int = 0) -> None:
    """Run `action` until it succeeds (or `attempts` failures, if positive), with backoff."""
    backoff = Backoff(max_s=5.0)
    attempt = 0
    while True:
        try:
            action()
            return
        except Exception as error:
            attempt += 1
            if 0 < attempts <= attempt:
                raise
            delay = backoff.delay(attempt, random.random())
            log.warning("%s failed (attempt %d, retry in %.1fs): %s", what, attempt, delay, error)
            time.sleep(delay)


def migrate(url: str, login: tuple[str, str] | None) -> None:
    from llmops.clickhouse.client import migrate as migrate_store

    applied = migrate_store(url, login=login)
    log.info("migrations applied: %s", ", ".join(applied) or "none new")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings()
    require_trust_settings(settings)
    options = WorkerOptions(app_id=args.app_id)
    logging.basicConfig(level=args.log_level.upper())
    setup_telemetry(SERVICE)
    if args.metrics_port:
        start_metrics_server(args.metrics_port, settings.metrics_host)
    if args.migrate:
        url = settings.clickhouse_url
        login = login_for(url, settings)
        retry_until_done("migrations", lambda: migrate(url, login))
    # Created at their final size before any client asks for them: a broker that
    # auto-creates topics would make them with its default partition count.
    retry_until_done(
        "creating topics",
        lambda: ensure_topics(
            settings.kafka_bootstrap_servers,
            topics_needed(options),
            replication_factor=settings.topic_replication_factor,
            security=KafkaSecurity.from_settings(settings),
        ),
    )
    worker = build_worker(settings, options)
    # What start-up built lives as long as the process: keep it out of the collector's
    # passes, and collect young objects less often (a batch allocates ~100 objects per
    # record): 1,290 -> 1,720 responses per CPU second (bench/streams.py, three alternating
    # pairs of runs, 8,000 responses).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        faust.Worker(worker.app, loglevel=args.log_level).execute_from_commandline()
    finally:
        worker.close()
        shutdown_telemetry()


if __name__ == "__main__":
    main()
