"""`python -m services.inference --pool NAME`: serve one pool's topic with its engine."""

from __future__ import annotations

import argparse
import asyncio
import logging

from llmops.bus import BusConfig, Producer
from llmops.config import get_settings
from llmops.runtime import consume_until, run_service
from llmops.topics import ensure_topics, platform_topics
from services.inference.engines.factory import create_engine
from services.inference.service import build_worker

log = logging.getLogger("services.inference")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", required=True, help="pool name from the settings' pools")
    parser.add_argument("--metrics-port", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = get_settings()
    pool = settings.pool(args.pool)

    async def serve(stop: asyncio.Event) -> None:
        await asyncio.to_thread(
            ensure_topics, settings.kafka_bootstrap_servers, platform_topics([pool.name])
        )
        engine = create_engine(pool, settings.data_dir)
        await engine.start()
        log.info("pool %s serving %s on %s engine", pool.name, pool.model, pool.engine)
        bus = BusConfig(settings.kafka_bootstrap_servers, client_id=f"llmops-inference-{pool.name}")
        try:
            async with Producer(bus) as producer:
                _, consumer = build_worker(settings, pool, engine, producer)
                await consume_until(stop, consumer)
        finally:
            await engine.stop()

    run_service(f"inference-{pool.name}", serve, args.metrics_port)


if __name__ == "__main__":
    main()
