"""`python -m services.router`: route llm.requests to the pools' topics."""

from __future__ import annotations

import argparse
import asyncio

from llmops.config import get_settings
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.prompts.files import load_prompt_set, seed_prompts_file
from llmops.runtime import consume_until, require_trust_settings, run_service
from services.router.service import build_router


async def main(stop: asyncio.Event) -> None:
    settings = get_settings()
    await asyncio.to_thread(
        ensure_topics,
        settings.kafka_bootstrap_servers,
        platform_topics(p.name for p in settings.pools),
        replication_factor=settings.topic_replication_factor,
        security=KafkaSecurity.from_settings(settings),
    )
    # The seed file is the base; the registry topics (followed by the router) apply on top.
    prompts = load_prompt_set([seed_prompts_file(settings.prompts_file)])
    async with Producer(BusConfig.from_settings(settings, client_id="llmops-router")) as producer:
        _, consumer = build_router(settings, prompts, producer)
        await consume_until(stop, consumer)


def metrics_port() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = get_settings().metrics_base_port
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=default + 1 if default else 0,
        help="Prometheus /metrics port (0: off; default LLMOPS_METRICS_BASE_PORT + 1)",
    )
    port: int = parser.parse_args().metrics_port
    return port


if __name__ == "__main__":
    require_trust_settings(get_settings())
    run_service("router", main, metrics_port(), metrics_host=get_settings().metrics_host)
