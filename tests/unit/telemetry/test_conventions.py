"""Semantic-convention attribute builders and span names (GenAI, messaging, db, llmops.*)."""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as genai
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.semconv.attributes import db_attributes as db

from llmops.telemetry import conventions
from llmops.telemetry.conventions import (
    db_attributes,
    db_span_name,
    error_attributes,
    genai_request_attributes,
    genai_request_parameters,
    genai_response_attributes,
    genai_span_name,
    llmops_attributes,
    messaging_attributes,
    messaging_span_name,
)

# --- attribute builders ----------------------------------------------------------------------


def test_genai_request_attributes_use_the_latest_names() -> None:
    attrs = genai_request_attributes("chat", "local", "gemma-3-270m", 64, 0.7, 0.9)
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "local",
        "gen_ai.request.model": "gemma-3-270m",
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.7,
        "gen_ai.request.top_p": 0.9,
    }
    # The deprecated name the provider replaced must not appear.
    assert genai.GEN_AI_SYSTEM not in attrs


def test_genai_request_attributes_leave_out_unset_values_and_keep_zero() -> None:
    attrs = genai_request_attributes("text_completion", "vllm", "m", temperature=0.0)
    assert attrs == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": "m",
        "gen_ai.request.temperature": 0.0,
    }


def test_genai_request_optional_attributes() -> None:
    attrs = genai_request_attributes(
        "chat",
        "local",
        "m",
        top_k=40,
        seed=7,
        stop_sequences=("\n\n",),
        stream=True,
        choice_count=2,
        frequency_penalty=0.1,
        presence_penalty=0.2,
        conversation_id="s-1",
    )
    assert attrs["gen_ai.request.top_k"] == 40
    assert attrs["gen_ai.request.seed"] == 7
    assert attrs["gen_ai.request.stop_sequences"] == ["\n\n"]
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.request.frequency_penalty"] == 0.1
    assert attrs["gen_ai.request.presence_penalty"] == 0.2
    assert attrs["gen_ai.conversation.id"] == "s-1"


def test_genai_response_attributes() -> None:
    attrs = genai_response_attributes(12, 34, ["stop"], "gemma-3-270m", "req-1")
    assert attrs == {
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.response.model": "gemma-3-270m",
        "gen_ai.response.id": "req-1",
    }
    assert genai_response_attributes() == {}
    assert genai_response_attributes(0, 0) == {
        "gen_ai.usage.input_tokens": 0,
        "gen_ai.usage.output_tokens": 0,
    }
    assert genai_response_attributes(time_to_first_chunk_s=0.25) == {
        "gen_ai.response.time_to_first_chunk": 0.25
    }


def test_attribute_names_match_the_installed_semantic_conventions() -> None:
    attrs = {
        **genai_request_attributes("chat", "p", "m", 1, 0.5, 0.5),
        **genai_response_attributes(1, 2, ["stop"], "m", "id"),
    }
    known = {v for k, v in vars(genai).items() if k.startswith("GEN_AI_")}
    assert set(attrs) <= known
    mattrs = messaging_attributes("process", "t", 1, 2, "k", "g", 3)
    assert set(mattrs) <= {v for k, v in vars(msg).items() if k.startswith("MESSAGING_")}


def test_messaging_attributes_full() -> None:
    attrs = messaging_attributes(
        "receive",
        "llm.requests",
        partition=3,
        offset=42,
        key=b"user-1",
        consumer_group="router",
        batch_count=10,
    )
    assert attrs == {
        "messaging.system": "kafka",
        "messaging.operation.type": "receive",
        "messaging.operation.name": "receive",
        "messaging.destination.name": "llm.requests",
        "messaging.destination.partition.id": "3",
        "messaging.kafka.offset": 42,
        "messaging.kafka.message.key": "user-1",
        "messaging.consumer.group.name": "router",
        "messaging.batch.message_count": 10,
    }
    # Deprecated names are not used.
    assert msg.MESSAGING_KAFKA_MESSAGE_OFFSET not in attrs
    assert msg.MESSAGING_KAFKA_CONSUMER_GROUP not in attrs


def test_messaging_attributes_minimal_and_partition_zero() -> None:
    attrs = messaging_attributes("send", "llm.responses", partition=0, offset=0)
    assert attrs["messaging.destination.partition.id"] == "0"
    assert attrs["messaging.kafka.offset"] == 0
    assert "messaging.kafka.message.key" not in attrs
    assert (
        messaging_attributes("send", "t", operation_name="publish")["messaging.operation.name"]
        == "publish"
    )


def test_span_names() -> None:
    assert messaging_span_name("process", "llm.requests") == "process llm.requests"
    assert genai_span_name("chat", "gemma-3-270m") == "chat gemma-3-270m"


def test_genai_request_parameters_alone() -> None:
    assert genai_request_parameters() == {}
    assert genai_request_parameters(model="m", max_tokens=0) == {
        "gen_ai.request.model": "m",
        "gen_ai.request.max_tokens": 0,
    }
    # The operation's builder is the same parameters plus who and what.
    full = genai_request_attributes("chat", "p", "m", 8, 0.5, stream=False)
    assert full == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "p",
        **genai_request_parameters(model="m", max_tokens=8, temperature=0.5, stream=False),
    }


def test_llmops_attributes_spell_the_platform_keys() -> None:
    assert llmops_attributes() == {}
    attrs = llmops_attributes(
        request_id="r1",
        app="chat-ui",
        tenant="acme",
        prompt_name="support",
        pool="gpu-a",
        variant="b",
        route_reason="canary: 10%",
        rescued_from="gpu-b",
        parked_s=1.5,
        error="no_healthy_pool",
        response_error_kind="timeout",
        dead_letter_kind="bad_json",
        windows=3,
        responses=0,
    )
    assert attrs == {
        "llmops.request_id": "r1",
        "llmops.app": "chat-ui",
        "llmops.tenant": "acme",
        "llmops.prompt.name": "support",
        "llmops.pool": "gpu-a",
        "llmops.variant": "b",
        "llmops.route_reason": "canary: 10%",
        "llmops.rescued_from": "gpu-b",
        "llmops.parked_s": 1.5,
        "llmops.error": "no_healthy_pool",
        "llmops.response.error_kind": "timeout",
        "llmops.dead_letter.kind": "bad_json",
        "llmops.windows": 3,
        "llmops.responses": 0,
    }


def test_db_and_error_attributes() -> None:
    assert db_attributes("clickhouse", "INSERT", "responses", 0) == {
        "db.system.name": "clickhouse",
        "db.operation.name": "INSERT",
        "db.collection.name": "responses",
        "db.operation.batch.size": 0,
    }
    assert db_attributes("clickhouse", "SELECT") == {
        "db.system.name": "clickhouse",
        "db.operation.name": "SELECT",
    }
    assert set(db_attributes("c", "o", "t", 1)) <= {
        v for k, v in vars(db).items() if k.startswith("DB_")
    }
    assert error_attributes("timeout") == {"error.type": "timeout"}
    assert db_span_name("INSERT", "responses") == "INSERT responses"


def test_every_key_is_named_once_in_its_namespace() -> None:
    keys = {
        name: value
        for name, value in vars(conventions).items()
        if name.isupper() and name.split("_")[0] in {"GEN", "MESSAGING", "DB", "ERROR", "LLMOPS"}
    }
    assert len(set(keys.values())) == len(keys), "two names for one key"
    prefixes = {"GEN": "gen_ai.", "MESSAGING": "messaging.", "DB": "db.", "LLMOPS": "llmops."}
    for name, key in keys.items():
        assert key.startswith(prefixes.get(name.split("_")[0], "error.")), name
