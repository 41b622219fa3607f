"""Answers to apps: final results (also published for the metrics) and error replies."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from pydantic import ValidationError

from llmops.kafka.deadletter import Rejected
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from schemas import (
    ErrorInfo,
    ErrorKind,
    FinishReason,
    InferenceResult,
    PromptRequest,
    ResponseChunk,
)
from schemas.requests import is_reply_topic
from schemas.topics import RESPONSES

log = logging.getLogger(__name__)
# A reply topic that does not answer within this long belongs to an app that went away.
REPLY_TIMEOUT_S = 5.0
# Fields the metrics need from llm.responses and the app already has: not sent back to it.
FOR_METRICS_ONLY = {"prompt_text", "context"}
# Every reply goes to this partition of the reply topic, so a client reads one partition
# whatever the topic's size (a topic auto-created by a late reply may have several).
REPLY_PARTITION = 0
# A refused payload larger than this is not parsed again for its app and tenant.
ORIGIN_SNIFF_LIMIT = 1_048_576

_REJECTION_KIND: dict[str, ErrorKind] = {
    "unroutable": "unroutable",
    "unknown_prompt": "invalid_request",
    "missing_variable": "missing_variable",
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
        await producer.send_event(RESPONSES.name, result, key=result.request_id, sign=True)
    ]
    if reply_to and is_reply_topic(reply_to):
        acks.append(asyncio.ensure_future(_reply(producer, result, reply_to)))
    elif reply_to:  # the contract refuses it: only a bug could bring one here
        log.error("reply for %s not sent to %r: not a reply topic", result.request_id, reply_to)
    return acks


async def send_reply(
    producer: Producer,
    reply_to: str,
    event: ResponseChunk | InferenceResult,
    exclude: set[str] | None = None,
) -> asyncio.Future[Any]:
    """A chunk or final result to the app: partition 0, keyed by request id (see README),
    signed. Never to a topic outside the reply prefix (an internal llm.* topic, Kafka's own)."""
    if not is_reply_topic(reply_to):
        raise ValueError(f"{reply_to!r} is not a reply topic")
    return await producer.send_event(
        reply_to,
        event,
        key=event.request_id,
        exclude=exclude,
        partition=REPLY_PARTITION,
        sign=True,
    )


async def _reply(producer: Producer, result: InferenceResult, reply_to: str) -> None:
    try:
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            await (await send_reply(producer, reply_to, result, exclude=FOR_METRICS_ONLY))
    except Exception as exc:
        log.warning("reply for %s to %s dropped: %r", result.request_id, reply_to, exc)


async def settle_best_effort(acks: list[asyncio.Future[Any]]) -> int:
    """Wait (bounded) for best-effort sends such as streamed chunks; returns how many failed."""
    if not acks:
        return 0
    # asyncio.wait, not gather under a timeout: gather would cancel the late sends first, and
    # a cancelled send looks done, so the late ones went uncounted.
    done, late = await asyncio.wait(acks, timeout=REPLY_TIMEOUT_S)
    for ack in late:
        ack.cancel()  # bounded: nothing is left waiting past the timeout
    failed = sum(1 for ack in done if ack.cancelled() or ack.exception() is not None)
    return failed + len(late)


def rejection_result(rejected: Rejected, request_id: str, **fields: Any) -> InferenceResult:
    """The error result an app gets for its refused request (`fields`: error_result's)."""
    kind = _REJECTION_KIND.get(rejected.kind, "invalid_request")
    # The dead letter's finer kind leads the message only where the reply's kind is coarser
    # (schema_invalid -> invalid_request), so an SDK error never reads "x: x: ...".
    message = rejected.reason if kind == rejected.kind else f"{rejected.kind}: {rejected.reason}"
    return error_result(request_id, kind, message, **fields)


def rejection_replier(producer: Producer) -> Any:
    """A ConsumerLoop reject hook: the app hears why its request was refused, when we know where."""

    async def reply(record: Record, rejected: Rejected) -> Sequence[Awaitable[Any]]:
        if rejected.request_id is None:
            return []
        try:
            result = rejection_result(rejected, rejected.request_id, **sniff_origin(record.value))
        except ValidationError:  # an app or tenant name the contract refuses: leave it out
            result = rejection_result(rejected, rejected.request_id)
        return await publish_result(producer, result, rejected.reply_to)

    return reply


def sniff_origin(payload: bytes | None) -> dict[str, Any]:
    """Best effort tenant and app of a refused request, so its error result is counted
    against them like every other result."""
    if not payload or len(payload) > ORIGIN_SNIFF_LIMIT:
        return {}
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: doc[k] for k in ("tenant", "app") if isinstance(doc.get(k), str)}
