"""What apps send: prompt requests, and what the router makes of them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.base import (
    MAX_ATTRIBUTE_LEN,
    MAX_INT32,
    MAX_INT64,
    MAX_ROUTE_REASON,
    MAX_TEXT_LEN,
    MIN_INT64,
    Attributes,
    Contract,
    Event,
    Identifier,
    Name,
    UtcDatetime,
    Version,
    new_id,
)

Role = Literal["system", "user", "assistant"]

MAX_MESSAGES = 256
MAX_OUTPUT_TOKENS = 8192
MAX_STOP_SEQUENCES = 8
MAX_STOP_LEN = 256  # characters of one stop string
MAX_TEMPERATURE = 2.0
# The app of `llmops eval run`'s requests: the router gives them variants of their own
# ("eval:<variant>"), so a suite's answers are monitored apart from the app traffic they test.
EVAL_APP = "llmops-eval"
EVAL_VARIANT_PREFIX = "eval:"


# Replies go only to topics under this prefix: never to an internal llm.* topic or Kafka's own.
REPLIES_PREFIX = "llm.replies."
# The prefix, then a legal Kafka topic name (not "." or "..": the clause after "|"), in all at
# most 249 characters, Kafka's limit.
REPLY_TOPIC_PATTERN = (
    f"^{re.escape(REPLIES_PREFIX)}(?:[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.{{3,}})$"
)
MAX_TOPIC_LEN = 249
_REPLY_TOPIC = re.compile(REPLY_TOPIC_PATTERN)
ReplyTopic = Annotated[str, Field(max_length=MAX_TOPIC_LEN, pattern=REPLY_TOPIC_PATTERN)]


def is_reply_topic(name: str) -> bool:
    """Whether `name` may receive replies (what ReplyTopic accepts)."""
    return len(name) <= MAX_TOPIC_LEN and _REPLY_TOPIC.fullmatch(name) is not None


class ChatMessage(Contract):
    role: Role
    content: str = Field(max_length=MAX_TEXT_LEN)


# What the app asks the answer to be: free text, or a JSON document.
ResponseFormat = Literal["text", "json"]


class PromptRef(Contract):
    """A named prompt from the registry: pinned `version`, else the version behind `label`."""

    name: Name
    label: Name | None = None
    version: Version | None = None
    variables: dict[str, str] = Field(default_factory=dict, max_length=128)


class SamplingParams(Contract):
    max_tokens: int = Field(default=128, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float = Field(default=0.0, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    # Engines keep top_k in int32 tensors (a k past the vocabulary keeps every token).
    top_k: int | None = Field(default=None, ge=1, le=MAX_INT32)
    seed: int | None = Field(default=None, ge=MIN_INT64, le=MAX_INT64)  # torch takes int64
    stop: list[Annotated[str, Field(max_length=MAX_STOP_LEN)]] = Field(
        default_factory=list, max_length=MAX_STOP_SEQUENCES
    )


class PromptRequest(Event):
    """An app's request. Exactly one of `messages` and `prompt`."""

    request_id: Identifier = Field(default_factory=new_id)
    tenant: Name = "default"
    app: Name = "default"
    user_id: Identifier | None = None
    session_id: Identifier | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)
    prompt: PromptRef | None = None
    model: Name | None = None
    adapter: Name | None = None
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    stream: bool = False
    reply_to: ReplyTopic | None = None
    deadline: UtcDatetime | None = None
    attributes: Attributes = Field(default_factory=dict)
    context: str | None = Field(default=None, max_length=MAX_TEXT_LEN)
    # "json": the app expects a JSON answer; the metrics worker then checks the answer parses.
    response_format: ResponseFormat = "text"

    @model_validator(mode="after")
    def _one_prompt_source(self) -> PromptRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of `messages` or `prompt`")
        for key, value in self.attributes.items():
            if len(key) > MAX_ATTRIBUTE_LEN or len(value) > MAX_ATTRIBUTE_LEN:
                raise ValueError(f"attribute {key[:32]!r} longer than {MAX_ATTRIBUTE_LEN}")
        return self

    @property
    def sticky_key(self) -> str:
        """Kafka key: keeps a user's (or session's) requests in order and on one variant."""
        return self.user_id or self.session_id or self.request_id

    def expired(self, now: datetime) -> bool:
        return self.deadline is not None and now >= self.deadline


class RoutedRequest(Event):
    """The request plus every decision the router made about it."""

    request: PromptRequest
    prompt_name: Name | None = None
    prompt_version: Version | None = None
    experiment: Name | None = None
    variant: Name = "default"
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    pool: Name
    model: Name
    route_reason: str = Field(max_length=MAX_ROUTE_REASON)
    routed_at: UtcDatetime
    # Set when the request was rescued from a dead pool's topic: a request is rescued once.
    rerouted_from: Name | None = None

    @property
    def request_id(self) -> str:
        return self.request.request_id
