"""The router service: llm.requests -> (prompt, variant, pool) -> llm.inference.<pool>."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from opentelemetry import trace

from llmops.bus import BusConfig, ConsumerConfig, ConsumerLoop, Producer, Record
from llmops.config import Settings
from llmops.deadletter import Rejected
from llmops.propagation import extract_context
from llmops.replies import error_result, publish_result, rejection_replier
from schemas import PromptRequest, utc_now
from schemas.topics import REQUESTS, inference_topic
from services.router.policy import RoutingError, route
from services.router.prompts import PromptError, PromptSet

log = logging.getLogger(__name__)
tracer = trace.get_tracer("llmops.router")
GROUP_ID = "llmops-router"


class Router:
    def __init__(self, settings: Settings, prompts: PromptSet, producer: Producer) -> None:
        self._settings = settings
        self._prompts = prompts
        self._producer = producer
        self.routed = 0

    async def handle(self, record: Record) -> Any:
        request = record.decode(PromptRequest, self._settings.max_message_bytes)
        with tracer.start_as_current_span(
            "route " + record.topic,
            context=extract_context(record.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.kafka.offset": record.offset,
                "llmops.request_id": request.request_id,
            },
        ) as span:
            now = utc_now()
            if request.expired(now):
                result = error_result(
                    request.request_id,
                    "deadline_exceeded",
                    "deadline passed before routing",
                    request=request,
                    finish_reason="timeout",
                )
                return asyncio.gather(
                    *await publish_result(self._producer, result, request.reply_to)
                )
            try:
                routed = route(request, self._prompts, self._settings.pools, now)
            except PromptError as exc:
                raise Rejected(
                    "unknown_prompt", str(exc), request.request_id, request.reply_to
                ) from exc
            except RoutingError as exc:
                raise Rejected(
                    "unroutable", str(exc), request.request_id, request.reply_to
                ) from exc
            span.set_attributes(
                {
                    "llmops.pool": routed.pool,
                    "llmops.variant": routed.variant,
                    "llmops.route_reason": routed.route_reason,
                    "gen_ai.request.model": routed.model,
                }
            )
            ack = await self._producer.send_event(
                inference_topic(routed.pool).name, routed, key=request.sticky_key
            )
        self.routed += 1
        return ack


def build_router(
    settings: Settings, prompts: PromptSet, producer: Producer
) -> tuple[Router, ConsumerLoop]:
    bus = BusConfig(settings.kafka_bootstrap_servers, client_id="llmops-router")
    router = Router(settings, prompts, producer)
    loop = ConsumerLoop(
        bus,
        ConsumerConfig(
            topics=[REQUESTS.name],
            group_id=GROUP_ID,
            service="router",
            max_in_flight=5000,
            max_message_bytes=settings.max_message_bytes,
            commit_interval_s=settings.commit_interval_s,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        ),
        router.handle,
        producer,
        on_reject=rejection_replier(producer),
    )
    return router, loop
