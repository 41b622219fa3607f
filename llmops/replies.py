"""Answers to apps: final results (also published for the metrics) and error replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from llmops.bus import Producer, Record
from llmops.deadletter import Rejected
from schemas import ErrorInfo, ErrorKind, FinishReason, InferenceResult, PromptRequest
from schemas.topics import RESPONSES

log = logging.getLogger(__name__)
# A reply topic that does not answer within this long belongs to an app that went away.
REPLY_TIMEOUT_S = 5.0
# Fields the metrics need from llm.responses and the app already has: not sent back to it.
FOR_METRICS_ONLY = {"prompt_text", "context"}

_REJECTION_KIND: dict[str, ErrorKind] = {
    "unroutable": "unroutable",
    "unknown_prompt": "invalid_request",
}


def error_result(
    request_id: str,
    kind: ErrorKind,
    message: str,
    *,
    request: PromptRequest | None = None,
    finish_reason: FinishReason = "error",
    **fields: Any,
) -> InferenceResult:
    extra: dict[str, Any] = {}
    if request is not None:
        extra = {"tenant": request.tenant, "app": request.app, "attributes": request.attributes}
    return InferenceResult(
        request_id=request_id,
        finish_reason=finish_reason,
        error=ErrorInfo(kind=kind, message=message[:4096]),
        **extra,
        **fields,
    )


async def publish_result(
    producer: Producer, result: InferenceResult, reply_to: str | None
) -> list[asyncio.Future[Any]]:
    """To llm.responses (the durable record: must be acknowledged) and to the app's reply
    topic when it has one (best effort: an app that went away must not stall the consumer)."""
    acks: list[asyncio.Future[Any]] = [
        await producer.send_event(RESPONSES.name, result, key=result.request_id)
    ]
    if reply_to:
        acks.append(asyncio.ensure_future(_reply(producer, result, reply_to)))
    return acks


async def _reply(producer: Producer, result: InferenceResult, reply_to: str) -> None:
    try:
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            await (
                await producer.send_event(
                    reply_to, result, key=result.request_id, exclude=FOR_METRICS_ONLY
                )
            )
    except Exception as exc:
        log.warning("reply for %s to %s dropped: %r", result.request_id, reply_to, exc)


async def settle_best_effort(acks: list[asyncio.Future[Any]]) -> int:
    """Wait (bounded) for best-effort sends such as streamed chunks; returns how many failed."""
    try:
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            outcomes = await asyncio.gather(*acks, return_exceptions=True)
    except TimeoutError:
        return sum(1 for a in acks if not a.done())
    return sum(1 for o in outcomes if isinstance(o, BaseException))


def rejection_replier(producer: Producer) -> Any:
    """A ConsumerLoop reject hook: the app hears why its request was refused, when we know where."""

    async def reply(record: Record, rejected: Rejected) -> Sequence[Awaitable[Any]]:
        if rejected.request_id is None:
            return []
        result = error_result(
            rejected.request_id,
            _REJECTION_KIND.get(rejected.kind, "invalid_request"),
            f"{rejected.kind}: {rejected.reason}",
        )
        return await publish_result(producer, result, rejected.reply_to)

    return reply
