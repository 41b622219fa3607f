"""A request naming a prompt it cannot fill is told why, under its own kind, and its error
result keeps the app and tenant it came from (real broker, router in process)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from llmops.sdk import LLMOpsClient, LLMOpsError
from schemas import InferenceResult
from tests.integration.kafka.test_dead_letters import read_dead_letters
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration


async def _error_of(client: LLMOpsClient, **kwargs: object) -> InferenceResult:
    with pytest.raises(LLMOpsError) as info:
        await client.generate(timeout_s=30, **kwargs)
    return info.value.result


async def test_prompt_errors_have_their_own_kinds_and_keep_app_and_tenant(
    bootstrap: str,
) -> None:
    marker = uuid.uuid4().hex
    async with (
        running_platform(bootstrap),
        LLMOpsClient(bootstrap, app="shop", tenant="acme") as client,
    ):
        # The test prompt `greet` needs {{ name }}: give another variable instead.
        missing, unknown = await asyncio.gather(
            _error_of(client, prompt="greet", variables={"nme": marker}),
            _error_of(client, prompt=f"nope-{marker}"),
        )
    assert missing.error is not None and unknown.error is not None
    assert missing.error.kind == "missing_variable"
    assert "'name' is undefined" in missing.error.message
    assert unknown.error.kind == "invalid_request"
    assert f"unknown prompt 'nope-{marker}'" in unknown.error.message
    for result in (missing, unknown):
        assert (result.app, result.tenant) == ("shop", "acme")
    letters = await read_dead_letters(bootstrap, marker, expected=2)
    assert sorted(letter.kind for letter in letters) == ["missing_variable", "unknown_prompt"]
