"""A request naming a prompt it cannot fill is told why, under its own kind, and its error
result keeps the app and tenant it came from (real broker, router in process)."""

from __future__ import annotations

import uuid

import pytest

from llmops.sdk import LLMOpsClient, LLMOpsError
from schemas import InferenceResult
from tests.integration.platform import running_platform
from tests.integration.test_dead_letters import read_dead_letters

pytestmark = pytest.mark.integration


async def _error_of(client: LLMOpsClient, **kwargs: object) -> InferenceResult:
    with pytest.raises(LLMOpsError) as info:
        await client.generate(timeout_s=30, **kwargs)
    return info.value.result


async def test_missing_variable_has_its_own_kind_and_keeps_app_and_tenant(
    bootstrap: str,
) -> None:
    marker = uuid.uuid4().hex
    async with (
        running_platform(bootstrap),
        LLMOpsClient(bootstrap, app="shop", tenant="acme") as client,
    ):
        # The test prompt `greet` needs {{ name }}: give another variable instead.
        result = await _error_of(client, prompt="greet", variables={"nme": marker})
    assert result.error is not None
    assert result.error.kind == "missing_variable"
    assert "'name' is undefined" in result.error.message
    assert (result.app, result.tenant) == ("shop", "acme")
    letters = await read_dead_letters(bootstrap, marker, expected=1)
    assert [letter.kind for letter in letters] == ["missing_variable"]


async def test_unknown_prompt_error_keeps_app_and_tenant(bootstrap: str) -> None:
    async with (
        running_platform(bootstrap),
        LLMOpsClient(bootstrap, app="shop", tenant="acme") as client,
    ):
        result = await _error_of(client, prompt=f"nope-{uuid.uuid4().hex[:6]}")
    assert result.error is not None and "unknown prompt" in result.error.message
    assert (result.app, result.tenant) == ("shop", "acme")
