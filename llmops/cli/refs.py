"""Prompt references as users type them: `NAME`, `NAME@VERSION`, `NAME@LABEL`. Pure."""

from __future__ import annotations

from llmops.cli.errors import Mistake
from schemas.prompts import PromptAddress, parse_prompt_address


def parse_ref(text: str) -> PromptAddress:
    """`NAME`, `NAME@3` or `NAME@production` -> its parts; a malformed one is a Mistake."""
    try:
        return parse_prompt_address(text)
    except ValueError as exc:
        raise Mistake(str(exc)) from None
