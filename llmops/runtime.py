"""How every service process starts and stops: logging, telemetry, metrics, signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

import uvloop

from llmops.config import Settings
from llmops.kafka.consumer import ConsumerLoop
from llmops.telemetry.metrics import start_metrics_server
from llmops.telemetry.setup import setup_telemetry, shutdown_telemetry

log = logging.getLogger(__name__)


def configure_logging(service: str) -> None:
    logging.basicConfig(
        level=os.environ.get("LLMOPS_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_service(
    service: str,
    main: Callable[[asyncio.Event], Awaitable[None]],
    metrics_port: int = 0,
    *,
    metrics_host: str,
) -> None:
    """Run `main(stop)` until it returns; SIGINT/SIGTERM set `stop` for a clean drain.
    /metrics listens on `metrics_host:metrics_port` (the settings' host), none on port 0."""
    configure_logging(service)
    setup_telemetry(service)
    if metrics_port:
        start_metrics_server(metrics_port, metrics_host)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop_runner:
            loop_runner.run(runner())
    finally:
        shutdown_telemetry()


def require_trust_settings(settings: Settings) -> None:
    """Refuse to start, in one line, without a signing key (unless signing is off) or with
    Kafka security settings that contradict each other: a service must never run open."""
    from llmops.kafka.security import KafkaSecurity, KafkaSecurityError
    from llmops.kafka.signing import SigningConfigError, keys_from_settings

    try:
        keys_from_settings(settings)
        KafkaSecurity.from_settings(settings)
    except (SigningConfigError, KafkaSecurityError) as exc:
        raise SystemExit(f"cannot start: {exc}") from None


async def consume_until(stop: asyncio.Event, consumer: ConsumerLoop) -> None:
    """Run a consumer loop until `stop` is set (then drain it) or it fails (then raise)."""
    task = asyncio.create_task(consumer.run())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    consumer.stop()
    stopper.cancel()
    await task
