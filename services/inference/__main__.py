"""`python -m services.inference --pool NAME`: serve one pool's topic with its engine."""

from __future__ import annotations

import argparse
import asyncio
import logging

from llmops.config import get_settings
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.runtime import consume_until, require_trust_settings, run_service
from services.inference.engines.factory import create_engine
from services.inference.heartbeat import Heartbeat
from services.inference.service import EngineDiedError, build_worker

log = logging.getLogger("services.inference")
# The exit code of a pool whose engine died: whoever supervises it starts a fresh one.
EXIT_ENGINE_DIED = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", required=True, help="pool name from the settings' pools")
    parser.add_argument("--metrics-port", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = get_settings()
    pool = settings.pool(args.pool)
    require_trust_settings(settings)

    async def serve(stop: asyncio.Event) -> None:
        await asyncio.to_thread(
            ensure_topics,
            settings.kafka_bootstrap_servers,
            platform_topics([pool.name]),
            replication_factor=settings.topic_replication_factor,
            security=KafkaSecurity.from_settings(settings),
        )
        engine = create_engine(pool, settings.data_dir)
        bus = BusConfig.from_settings(settings, client_id=f"llmops-inference-{pool.name}")
        async with Producer(bus) as producer:
            # Beat from the start ("starting"), so routers know the pool is on its way
            # while the model loads, and never declare it dead meanwhile.
            heartbeat = Heartbeat(settings, pool, producer, engine)
            heartbeat.start()
            try:
                await engine.start()
                log.info("pool %s serving %s on %s engine", pool.name, pool.model, pool.engine)
                _, consumer = build_worker(settings, pool, engine, producer, heartbeat)
                await consume_until(stop, consumer)
            finally:
                await heartbeat.stop()
                await engine.stop()

    try:
        run_service(
            f"inference-{pool.name}", serve, args.metrics_port, metrics_host=settings.metrics_host
        )
    except EngineDiedError as exc:
        log.error("pool %s exits: its engine died (%s)", pool.name, exc)
        raise SystemExit(EXIT_ENGINE_DIED) from None


if __name__ == "__main__":
    main()
