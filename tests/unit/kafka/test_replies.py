"""Answers to apps without a broker: error results, the sniffed origin of refused input, the
bounded wait for best-effort sends, and the replier the consumer loop calls on a rejection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from llmops.kafka import replies
from llmops.kafka.deadletter import Rejected
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from llmops.kafka.replies import (
    FOR_METRICS_ONLY,
    ORIGIN_SNIFF_LIMIT,
    REPLY_PARTITION,
    error_result,
    rejection_replier,
    settle_best_effort,
    sniff_origin,
)
from schemas import Event, InferenceResult, PromptRequest
from schemas.topics import RESPONSES


@dataclass
class Sent:
    topic: str
    event: Event
    key: str | bytes | None
    partition: int | None
    sign: bool
    exclude: set[str] | None


@dataclass
class RecordingProducer:
    """Producer.send_event as the replies use it: each send recorded and acknowledged at once."""

    sent: list[Sent] = field(default_factory=list)

    async def send_event(
        self,
        topic: str,
        event: Event,
        key: str | bytes | None = None,
        extra_headers: Sequence[tuple[str, bytes]] = (),
        exclude: set[str] | None = None,
        sign: bool = False,
        partition: int | None = None,
    ) -> asyncio.Future[None]:
        self.sent.append(Sent(topic, event, key, partition, sign, exclude))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def refused(payload: dict[str, Any] | bytes) -> Record:
    value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Record("llm.requests", 0, 9, None, value, [], 0)


Replier = Callable[[Record, Rejected], Awaitable[Sequence[Awaitable[Any]]]]


def replier_with(producer: RecordingProducer) -> Replier:
    hook: Replier = rejection_replier(cast(Producer, producer))
    return hook


# error_result


def test_an_error_result_carries_the_kind_and_a_bounded_message() -> None:
    result = error_result("r1", "engine_error", "x" * 10_000)
    assert (result.request_id, result.finish_reason) == ("r1", "error")
    assert result.error is not None and result.error.kind == "engine_error"
    assert result.error.message == "x" * 4096
    assert (result.tenant, result.app, result.attributes) == ("default", "default", {})


def test_an_error_result_for_a_request_is_counted_against_its_origin() -> None:
    request = PromptRequest.model_validate(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "tenant": "acme",
            "app": "support",
            "attributes": {"segment": "b"},
        }
    )
    result = error_result(request.request_id, "deadline_exceeded", "late", request=request)
    assert (result.tenant, result.app, result.attributes) == ("acme", "support", {"segment": "b"})


def test_an_error_result_takes_a_finish_reason_and_more_fields() -> None:
    result = error_result("r1", "deadline_exceeded", "late", finish_reason="timeout", pool="gpu")
    assert (result.finish_reason, result.pool) == ("timeout", "gpu")


# sniff_origin


def test_the_origin_is_the_tenant_and_app_of_the_refused_request() -> None:
    payload = json.dumps({"tenant": "acme", "app": "support", "model": "x"}).encode()
    assert sniff_origin(payload) == {"tenant": "acme", "app": "support"}


@pytest.mark.parametrize(
    "payload",
    [
        None,
        b"",
        b"{",
        b"\xff",
        b"[1]",
        b"[" * 100_000,
        json.dumps({"tenant": 5, "app": ["a"]}).encode(),
    ],
)
def test_no_origin_from_what_holds_none(payload: bytes | None) -> None:
    assert sniff_origin(payload) == {}


def test_an_origin_past_the_sniff_limit_is_not_parsed() -> None:
    doc = {"tenant": "acme", "pad": ""}
    size = len(json.dumps(doc).encode())
    doc["pad"] = "p" * (ORIGIN_SNIFF_LIMIT - size)
    at_limit = json.dumps(doc).encode()
    assert len(at_limit) == ORIGIN_SNIFF_LIMIT
    assert sniff_origin(at_limit) == {"tenant": "acme"}
    assert sniff_origin(at_limit + b" ") == {}


# settle_best_effort


async def test_settling_counts_the_failed_sends() -> None:
    loop = asyncio.get_running_loop()
    acks: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
    acks[0].set_result(None)
    acks[1].set_exception(ConnectionError("gone"))
    acks[2].set_result(None)
    assert await settle_best_effort(acks) == 1


async def test_settling_is_bounded_when_sends_never_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replies, "REPLY_TIMEOUT_S", 0.05)
    loop = asyncio.get_running_loop()
    acks: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
    acks[0].set_result(None)
    failed = await settle_best_effort(acks)  # returns, never raises TimeoutError
    assert failed == 2  # the two sends still pending at the bound count as undelivered
    assert all(ack.done() for ack in acks)  # nothing left waiting on the app


async def test_settling_nothing_fails_nothing() -> None:
    assert await settle_best_effort([]) == 0


# rejection_replier


async def test_a_rejection_without_a_request_id_gets_no_reply() -> None:
    producer = RecordingProducer()
    acks = await replier_with(producer)(refused(b"{"), Rejected("not_json", "bad"))
    assert list(acks) == [] and producer.sent == []


async def test_a_rejection_is_published_and_replied_with_its_kind_and_origin() -> None:
    producer = RecordingProducer()
    record = refused({"tenant": "acme", "app": "support"})
    rejected = Rejected("missing_variable", "name", "r1", "llm.replies.a")
    acks = await replier_with(producer)(record, rejected)
    await asyncio.gather(*acks)
    assert [s.topic for s in producer.sent] == [RESPONSES.name, "llm.replies.a"]
    durable, reply = producer.sent
    assert durable.sign and durable.key == "r1"
    assert (reply.partition, reply.sign, reply.exclude) == (REPLY_PARTITION, True, FOR_METRICS_ONLY)
    result = durable.event
    assert isinstance(result, InferenceResult)
    assert result.error is not None
    assert (result.error.kind, result.error.message) == (
        "missing_variable",
        "name",  # the kind is said once, not again in the message
    )
    assert (result.tenant, result.app) == ("acme", "support")
    assert reply.event is result


@pytest.mark.parametrize(
    ("kind", "error_kind"),
    [
        ("unroutable", "unroutable"),
        ("unknown_prompt", "invalid_request"),
        ("schema_invalid", "invalid_request"),
        ("oversized", "invalid_request"),
    ],
)
async def test_rejection_kinds_map_to_error_kinds(kind: Any, error_kind: str) -> None:
    producer = RecordingProducer()
    await replier_with(producer)(refused(b"{}"), Rejected(kind, "why", "r1"))
    result = producer.sent[0].event
    assert isinstance(result, InferenceResult) and result.error is not None
    assert result.error.kind == error_kind


async def test_an_origin_the_contract_refuses_is_left_out_not_fatal() -> None:
    producer = RecordingProducer()
    record = refused({"tenant": "t" * 10_000, "app": "support"})
    await replier_with(producer)(record, Rejected("schema_invalid", "why", "r1"))
    result = producer.sent[0].event
    assert isinstance(result, InferenceResult)
    assert (result.tenant, result.app) == ("default", "default")  # neither sniffed field kept
    assert result.error is not None and result.request_id == "r1"


async def test_without_a_reply_topic_only_the_durable_result_is_sent() -> None:
    producer = RecordingProducer()
    await replier_with(producer)(refused(b"{}"), Rejected("unroutable", "why", "r1", None))
    assert [s.topic for s in producer.sent] == [RESPONSES.name]
