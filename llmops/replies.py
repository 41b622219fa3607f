"""Answers to apps: final results (also published for the metrics) and error replies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from llmops.bus import Producer, Record
from llmops.deadletter import Rejected
from schemas import ErrorInfo, ErrorKind, FinishReason, InferenceResult, PromptRequest
from schemas.topics import RESPONSES

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
    """To the app's reply topic (if any) and to llm.responses; returns the ack futures."""
    acks = [await producer.send_event(RESPONSES.name, result, key=result.request_id)]
    if reply_to:
        acks.append(await producer.send_event(reply_to, result, key=result.request_id))
    return acks


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
