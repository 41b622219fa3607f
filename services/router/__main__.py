"""`python -m services.router`: route llm.requests to the pools' topics."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

from llmops.bus import BusConfig, Producer
from llmops.config import get_settings
from llmops.runtime import consume_until, run_service
from llmops.topics import ensure_topics, platform_topics
from services.router.prompts import load_prompt_set
from services.router.service import build_router


def default_prompts_file() -> Path:
    return Path(str(resources.files("llmops.demo") / "prompts.yaml"))


async def main(stop: asyncio.Event) -> None:
    settings = get_settings()
    await asyncio.to_thread(
        ensure_topics,
        settings.kafka_bootstrap_servers,
        platform_topics(p.name for p in settings.pools),
    )
    prompts = load_prompt_set([settings.prompts_file or default_prompts_file()])
    async with Producer(
        BusConfig(settings.kafka_bootstrap_servers, client_id="llmops-router")
    ) as producer:
        _, consumer = build_router(settings, prompts, producer)
        await consume_until(stop, consumer)


if __name__ == "__main__":
    settings = get_settings()
    run_service("router", main, settings.metrics_base_port and settings.metrics_base_port + 1)
