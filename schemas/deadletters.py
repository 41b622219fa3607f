"""Dead letters (llm.dlq): input a consumer could not take, with why and where it came from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import MAX_OFFSET, MAX_PARTITION, MAX_PAYLOAD_BYTES, Event, Identifier, Name

DeadLetterKind = Literal[
    "not_json",
    "schema_invalid",
    "oversized",
    "unroutable",
    "unknown_prompt",
    "missing_variable",
    "processing_error",
    "unstorable",  # valid, but the store cannot hold a value of it (found by the sink)
    "unsigned",  # a heartbeat or result without the deployment's signature
    "bad_signature",  # signed, but not validly under any accepted key
]


class DeadLetter(Event):
    """Input a consumer could not take, kept whole so it can be inspected and replayed."""

    kind: DeadLetterKind
    reason: str = Field(max_length=8192)
    service: Name
    source_topic: str
    source_partition: int = Field(ge=0, le=MAX_PARTITION)
    source_offset: int = Field(ge=0, le=MAX_OFFSET)
    key_b64: str | None = None
    payload_b64: str = Field(description="original bytes, base64 (truncated past the size limit)")
    payload_size: int = Field(ge=0, le=MAX_PAYLOAD_BYTES)
    headers: dict[str, str] = Field(default_factory=dict)
    request_id: Identifier | None = None
    reply_to: str | None = None
