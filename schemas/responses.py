"""What inference sends back: streamed chunks and the one final result."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import (
    MAX_ROUTE_REASON,
    MAX_TEXT_LEN,
    MAX_TOKENS,
    Attributes,
    Contract,
    CostUsd,
    Event,
    Identifier,
    Millis,
    Name,
    TokenCount,
    Version,
)
from schemas.requests import ResponseFormat

FinishReason = Literal["stop", "length", "abort", "timeout", "error"]
ErrorKind = Literal[
    "invalid_request",
    "unroutable",
    "deadline_exceeded",
    "engine_error",
    "overloaded",
    "no_healthy_pool",
    "missing_variable",
]


class Usage(Contract):
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Timings(Contract):
    """Milliseconds. queue: consumed -> engine start; ttft: engine start -> first token."""

    queue_ms: Millis = 0.0
    ttft_ms: Millis = 0.0
    tpot_ms: Millis = 0.0
    total_ms: Millis = 0.0


class ErrorInfo(Contract):
    kind: ErrorKind
    message: str = Field(max_length=4096)


class ResponseChunk(Event):
    """One streamed piece of output; `seq` starts at 0 and has no gaps."""

    request_id: Identifier
    seq: int = Field(ge=0, le=MAX_TOKENS)  # a chunk carries at least one token
    text: str = Field(max_length=MAX_TEXT_LEN)


class InferenceResult(Event):
    """The final answer to a request: sent to its reply topic and to llm.responses."""

    request_id: Identifier
    tenant: Name = "default"
    app: Name = "default"
    text: str = Field(default="", max_length=MAX_TEXT_LEN)
    finish_reason: FinishReason
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
    chunks: int = Field(default=0, ge=0, le=MAX_TOKENS)
    pool: Name | None = None
    model: Name | None = None
    engine: Name | None = None
    prompt_name: Name | None = None
    prompt_version: Version | None = None
    experiment: Name | None = None
    variant: Name | None = None
    route_reason: str | None = Field(default=None, max_length=MAX_ROUTE_REASON)
    attributes: Attributes = Field(default_factory=dict)
    cost_usd: CostUsd = 0.0
    error: ErrorInfo | None = None
    # What the metrics need and the reply does not carry twice: the prompt as sent and
    # the grounding context, so streams can score safety and grounding.
    prompt_text: str | None = Field(default=None, max_length=MAX_TEXT_LEN)
    context: str | None = Field(default=None, max_length=MAX_TEXT_LEN)
    # What the request asked the answer to be ("json": the worker checks the answer parses).
    response_format: ResponseFormat = "text"

    @property
    def ok(self) -> bool:
        return self.error is None
