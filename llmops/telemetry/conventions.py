"""Semantic conventions: every span attribute key we write, the builders that fill them, and
span names.

GenAI and messaging keys are the latest experimental names of the installed
`opentelemetry-semconv` (so a rename there shows up here, and only here); `llmops.*` keys are
the platform's own. Services never spell a key: they call a builder, so an analyst's query on
`SpanAttributes[...]` finds the same name from every process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as genai
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.semconv.attributes import db_attributes as db
from opentelemetry.semconv.attributes import error_attributes as err
from opentelemetry.util.types import AttributeValue

Attributes = dict[str, AttributeValue]
MessagingOperation = Literal["send", "receive", "process", "settle", "create"]

# The value of `messaging.system`: every hop is a Kafka topic.
KAFKA: Final = "kafka"

# --- GenAI (gen_ai.*) -----------------------------------------------------------------------

GEN_AI_OPERATION_NAME: Final = genai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME: Final = genai.GEN_AI_PROVIDER_NAME
GEN_AI_CONVERSATION_ID: Final = genai.GEN_AI_CONVERSATION_ID
GEN_AI_REQUEST_MODEL: Final = genai.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_MAX_TOKENS: Final = genai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_TEMPERATURE: Final = genai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_TOP_P: Final = genai.GEN_AI_REQUEST_TOP_P
GEN_AI_REQUEST_TOP_K: Final = genai.GEN_AI_REQUEST_TOP_K
GEN_AI_REQUEST_SEED: Final = genai.GEN_AI_REQUEST_SEED
GEN_AI_REQUEST_STOP_SEQUENCES: Final = genai.GEN_AI_REQUEST_STOP_SEQUENCES
GEN_AI_REQUEST_STREAM: Final = genai.GEN_AI_REQUEST_STREAM
GEN_AI_REQUEST_CHOICE_COUNT: Final = genai.GEN_AI_REQUEST_CHOICE_COUNT
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = genai.GEN_AI_REQUEST_FREQUENCY_PENALTY
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = genai.GEN_AI_REQUEST_PRESENCE_PENALTY
GEN_AI_USAGE_INPUT_TOKENS: Final = genai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS: Final = genai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_RESPONSE_FINISH_REASONS: Final = genai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_RESPONSE_MODEL: Final = genai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_ID: Final = genai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = genai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK

# --- messaging (messaging.*) ----------------------------------------------------------------

MESSAGING_SYSTEM: Final = msg.MESSAGING_SYSTEM
MESSAGING_OPERATION_TYPE: Final = msg.MESSAGING_OPERATION_TYPE
MESSAGING_OPERATION_NAME: Final = msg.MESSAGING_OPERATION_NAME
MESSAGING_DESTINATION_NAME: Final = msg.MESSAGING_DESTINATION_NAME
MESSAGING_DESTINATION_PARTITION_ID: Final = msg.MESSAGING_DESTINATION_PARTITION_ID
MESSAGING_KAFKA_OFFSET: Final = msg.MESSAGING_KAFKA_OFFSET
MESSAGING_KAFKA_MESSAGE_KEY: Final = msg.MESSAGING_KAFKA_MESSAGE_KEY
MESSAGING_CONSUMER_GROUP_NAME: Final = msg.MESSAGING_CONSUMER_GROUP_NAME
MESSAGING_BATCH_MESSAGE_COUNT: Final = msg.MESSAGING_BATCH_MESSAGE_COUNT
MESSAGING_MESSAGE_ID: Final = msg.MESSAGING_MESSAGE_ID
MESSAGING_MESSAGE_BODY_SIZE: Final = msg.MESSAGING_MESSAGE_BODY_SIZE

# --- database (db.*) and errors -------------------------------------------------------------

DB_SYSTEM_NAME: Final = db.DB_SYSTEM_NAME
DB_OPERATION_NAME: Final = db.DB_OPERATION_NAME
DB_COLLECTION_NAME: Final = db.DB_COLLECTION_NAME
DB_OPERATION_BATCH_SIZE: Final = db.DB_OPERATION_BATCH_SIZE
ERROR_TYPE: Final = err.ERROR_TYPE

# --- the platform's own (llmops.*) ----------------------------------------------------------

LLMOPS_REQUEST_ID: Final = "llmops.request_id"
LLMOPS_APP: Final = "llmops.app"
LLMOPS_TENANT: Final = "llmops.tenant"
LLMOPS_PROMPT_NAME: Final = "llmops.prompt.name"
LLMOPS_POOL: Final = "llmops.pool"
LLMOPS_VARIANT: Final = "llmops.variant"
LLMOPS_ROUTE_REASON: Final = "llmops.route_reason"
LLMOPS_RESCUED_FROM: Final = "llmops.rescued_from"
LLMOPS_PARKED_S: Final = "llmops.parked_s"
LLMOPS_ERROR: Final = "llmops.error"
LLMOPS_RESPONSE_ERROR_KIND: Final = "llmops.response.error_kind"
LLMOPS_DEAD_LETTER_KIND: Final = "llmops.dead_letter.kind"
LLMOPS_WINDOWS: Final = "llmops.windows"
LLMOPS_RESPONSES: Final = "llmops.responses"


def _set(attrs: Attributes, key: str, value: AttributeValue | None) -> None:
    if value is not None:
        attrs[key] = value


# --- builders -------------------------------------------------------------------------------


def genai_request_parameters(
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    stop_sequences: Sequence[str] | None = None,
    stream: bool | None = None,
    choice_count: int | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
) -> Attributes:
    """The `gen_ai.request.*` attributes alone (unset values are left out): for a span that
    handles a GenAI request without being its operation (routing it, storing it)."""
    attrs: Attributes = {}
    _set(attrs, GEN_AI_REQUEST_MODEL, model)
    _set(attrs, GEN_AI_REQUEST_MAX_TOKENS, max_tokens)
    _set(attrs, GEN_AI_REQUEST_TEMPERATURE, temperature)
    _set(attrs, GEN_AI_REQUEST_TOP_P, top_p)
    _set(attrs, GEN_AI_REQUEST_TOP_K, top_k)
    _set(attrs, GEN_AI_REQUEST_SEED, seed)
    if stop_sequences:
        attrs[GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop_sequences)
    _set(attrs, GEN_AI_REQUEST_STREAM, stream)
    _set(attrs, GEN_AI_REQUEST_CHOICE_COUNT, choice_count)
    _set(attrs, GEN_AI_REQUEST_FREQUENCY_PENALTY, frequency_penalty)
    _set(attrs, GEN_AI_REQUEST_PRESENCE_PENALTY, presence_penalty)
    return attrs


def genai_request_attributes(
    operation: str,
    provider: str,
    model: str,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    *,
    top_k: int | None = None,
    seed: int | None = None,
    stop_sequences: Sequence[str] | None = None,
    stream: bool | None = None,
    choice_count: int | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    conversation_id: str | None = None,
) -> Attributes:
    """Attributes of a GenAI client/inference span at its start (unset values are left out)."""
    attrs: Attributes = {GEN_AI_OPERATION_NAME: operation, GEN_AI_PROVIDER_NAME: provider}
    attrs.update(
        genai_request_parameters(
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop_sequences=stop_sequences,
            stream=stream,
            choice_count=choice_count,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
        )
    )
    _set(attrs, GEN_AI_CONVERSATION_ID, conversation_id)
    return attrs


def genai_response_attributes(
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    finish_reasons: Sequence[str] | None = None,
    response_model: str | None = None,
    response_id: str | None = None,
    *,
    time_to_first_chunk_s: float | None = None,
) -> Attributes:
    """Attributes known when a GenAI response is complete (unset values are left out)."""
    attrs: Attributes = {}
    _set(attrs, GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
    _set(attrs, GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
    if finish_reasons:
        attrs[GEN_AI_RESPONSE_FINISH_REASONS] = list(finish_reasons)
    _set(attrs, GEN_AI_RESPONSE_MODEL, response_model)
    _set(attrs, GEN_AI_RESPONSE_ID, response_id)
    _set(attrs, GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, time_to_first_chunk_s)
    return attrs


def messaging_attributes(
    operation_type: MessagingOperation,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: str | bytes | None = None,
    consumer_group: str | None = None,
    batch_count: int | None = None,
    *,
    operation_name: str | None = None,
    message_id: str | None = None,
    body_size: int | None = None,
) -> Attributes:
    """Kafka messaging attributes; `operation_name` defaults to the operation type."""
    attrs: Attributes = {
        MESSAGING_SYSTEM: KAFKA,
        MESSAGING_OPERATION_TYPE: operation_type,
        MESSAGING_OPERATION_NAME: operation_name or operation_type,
        MESSAGING_DESTINATION_NAME: topic,
    }
    if partition is not None:
        # The convention types the partition id as a string (it is generic across systems).
        attrs[MESSAGING_DESTINATION_PARTITION_ID] = str(partition)
    _set(attrs, MESSAGING_KAFKA_OFFSET, offset)
    if key is not None:
        attrs[MESSAGING_KAFKA_MESSAGE_KEY] = (
            key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        )
    _set(attrs, MESSAGING_CONSUMER_GROUP_NAME, consumer_group)
    _set(attrs, MESSAGING_BATCH_MESSAGE_COUNT, batch_count)
    _set(attrs, MESSAGING_MESSAGE_ID, message_id)
    _set(attrs, MESSAGING_MESSAGE_BODY_SIZE, body_size)
    return attrs


def db_attributes(
    system: str,
    operation: str,
    collection: str | None = None,
    batch_size: int | None = None,
) -> Attributes:
    """Database client attributes (`db.system.name`, ...; unset values are left out)."""
    attrs: Attributes = {DB_SYSTEM_NAME: system, DB_OPERATION_NAME: operation}
    _set(attrs, DB_COLLECTION_NAME, collection)
    _set(attrs, DB_OPERATION_BATCH_SIZE, batch_size)
    return attrs


def error_attributes(error_type: str) -> Attributes:
    """`error.type`: the kind of failure a span ended in (a bounded, low-cardinality name)."""
    return {ERROR_TYPE: error_type}


def llmops_attributes(
    *,
    request_id: str | None = None,
    app: str | None = None,
    tenant: str | None = None,
    prompt_name: str | None = None,
    pool: str | None = None,
    variant: str | None = None,
    route_reason: str | None = None,
    rescued_from: str | None = None,
    parked_s: float | None = None,
    error: str | None = None,
    response_error_kind: str | None = None,
    dead_letter_kind: str | None = None,
    windows: int | None = None,
    responses: int | None = None,
) -> Attributes:
    """The platform's own attributes (unset values are left out).

    `error` is why the platform could not take a request (rescue); `response_error_kind` is a
    response's own failure, seen by a span that processed it fine (the metrics worker)."""
    attrs: Attributes = {}
    _set(attrs, LLMOPS_REQUEST_ID, request_id)
    _set(attrs, LLMOPS_APP, app)
    _set(attrs, LLMOPS_TENANT, tenant)
    _set(attrs, LLMOPS_PROMPT_NAME, prompt_name)
    _set(attrs, LLMOPS_POOL, pool)
    _set(attrs, LLMOPS_VARIANT, variant)
    _set(attrs, LLMOPS_ROUTE_REASON, route_reason)
    _set(attrs, LLMOPS_RESCUED_FROM, rescued_from)
    _set(attrs, LLMOPS_PARKED_S, parked_s)
    _set(attrs, LLMOPS_ERROR, error)
    _set(attrs, LLMOPS_RESPONSE_ERROR_KIND, response_error_kind)
    _set(attrs, LLMOPS_DEAD_LETTER_KIND, dead_letter_kind)
    _set(attrs, LLMOPS_WINDOWS, windows)
    _set(attrs, LLMOPS_RESPONSES, responses)
    return attrs


# --- span names -----------------------------------------------------------------------------


def genai_span_name(operation: str, model: str) -> str:
    """The GenAI convention's span name: `{operation} {model}`."""
    return f"{operation} {model}".strip()


def messaging_span_name(operation_name: str, topic: str) -> str:
    """The messaging convention's span name: `{operation name} {destination}`."""
    return f"{operation_name} {topic}"


def db_span_name(operation: str, collection: str) -> str:
    """The database convention's span name: `{operation} {collection}`."""
    return f"{operation} {collection}"
