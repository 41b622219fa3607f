"""Replies go only to reply topics: the contract, the sniffing of invalid input, the SDK's
own topic names, and the reply sender itself."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from llmops.kafka.config import BusConfig
from llmops.kafka.deadletter import sniff_reply_fields
from llmops.kafka.producer import Producer
from llmops.kafka.replies import send_reply
from schemas import InferenceResult, PromptRequest
from schemas.requests import REPLIES_PREFIX, is_reply_topic
from schemas.topics import CORE_TOPICS, inference_topic, reply_topic

REFUSED = [
    "llm.pools.status",
    "llm.prompts",
    "llm.experiments",
    "llm.responses",
    "llm.requests",
    "llm.dlq",
    "__consumer_offsets",
    "__transaction_state",
    "a/b",
    "llm.replies.a/b",
    "llm.replies.",
    "llm.replies..",
    "llm.replies.a b",
    "llm.replies.a\n",
    "llm.replies.é",
    "LLM.REPLIES.x",
    "xllm.replies.a",
    "llm.repliesX.a",
    "",
    REPLIES_PREFIX + "x" * (249 - len(REPLIES_PREFIX) + 1),
]
ACCEPTED = [
    "llm.replies.app-0123456789ab",
    "llm.replies.a",
    "llm.replies._",
    "llm.replies....",
    "llm.replies.A.b_c-d",
    REPLIES_PREFIX + "x" * (249 - len(REPLIES_PREFIX)),
]


def request(reply_to: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": "hi"}], "reply_to": reply_to}


@pytest.mark.parametrize("name", REFUSED)
def test_the_contract_refuses_anything_but_a_reply_topic(name: str) -> None:
    assert not is_reply_topic(name)
    with pytest.raises(ValidationError, match="reply_to"):
        PromptRequest.model_validate(request(name))


@pytest.mark.parametrize("name", ACCEPTED)
def test_the_contract_takes_reply_topics(name: str) -> None:
    assert is_reply_topic(name)
    assert PromptRequest.model_validate(request(name)).reply_to == name


def test_no_internal_topic_is_a_reply_topic() -> None:
    internal = [spec.name for spec in CORE_TOPICS] + [inference_topic("cpu").name]
    assert not [name for name in internal if is_reply_topic(name)]


def test_the_exported_schema_carries_the_rule() -> None:
    schema = json.dumps(PromptRequest.model_json_schema())
    assert "llm\\\\.replies\\\\." in schema and '"maxLength": 249' in schema


@pytest.mark.parametrize("name", REFUSED)
def test_sniffing_an_invalid_payload_never_yields_a_non_reply_topic(name: str) -> None:
    payload = json.dumps({"request_id": "r1", "reply_to": name, "messages": []}).encode()
    assert sniff_reply_fields(payload) == ("r1", None)


def test_sniffing_keeps_a_reply_topic() -> None:
    payload = json.dumps({"request_id": "r1", "reply_to": "llm.replies.a", "x": 1}).encode()
    assert sniff_reply_fields(payload) == ("r1", "llm.replies.a")


@pytest.mark.parametrize(
    "client_id", ["support/v2-abc", "a:b", ".", "..", "", "x" * 400, "tenant a", "ü"]
)
def test_every_client_id_makes_a_reply_topic_the_contract_accepts(client_id: str) -> None:
    name = reply_topic(client_id).name
    assert is_reply_topic(name)
    assert PromptRequest.model_validate(request(name)).reply_to == name


def test_a_plain_client_id_is_kept_as_it_is() -> None:
    assert reply_topic("app-0123").name == "llm.replies.app-0123"


@pytest.mark.parametrize("name", ["llm.pools.status", "__consumer_offsets", "a/b"])
async def test_the_reply_sender_refuses_a_non_reply_topic(name: str) -> None:
    producer = Producer(BusConfig("127.0.0.1:1"))  # never started: nothing may be sent
    result = InferenceResult(request_id="r1", finish_reason="stop")
    with pytest.raises(ValueError, match="not a reply topic"):
        await send_reply(producer, name, result)
    await producer.stop()
