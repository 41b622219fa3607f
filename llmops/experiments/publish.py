"""Publishing an experiment's new state: signed, on the compacted llm.experiments, keyed by
its name (the router and the history sink accept signed states only)."""

from __future__ import annotations

from llmops.config import Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.producer import Producer
from schemas import Experiment
from schemas.topics import EXPERIMENTS


async def publish_experiment(producer: Producer, experiment: Experiment) -> None:
    """Send and wait for the broker's ack."""
    ack = await producer.send_event(EXPERIMENTS.name, experiment, key=experiment.name, sign=True)
    await ack


async def publish_with_settings(settings: Settings, experiment: Experiment) -> None:
    """`publish_experiment` over a producer of its own, signing with the deployment key."""
    bus = BusConfig.from_settings(settings, client_id="llmops-experiments")
    async with Producer(bus) as producer:
        await publish_experiment(producer, experiment)
