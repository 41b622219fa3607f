"""The prompt registry's records: immutable, numbered versions of named prompts."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Event, Name, Version
from schemas.requests import ChatMessage


class PromptVersion(Event):
    """One immutable version of a named prompt (llm.prompts, compacted, key name:version)."""

    name: Name
    version: Version
    messages: list[ChatMessage] = Field(min_length=1)
    labels: list[Name] = Field(default_factory=list)
    model: Name | None = None
    description: str = Field(default="", max_length=4096)
