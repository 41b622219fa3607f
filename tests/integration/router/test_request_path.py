"""SDK -> router -> inference pool -> replies, on the real broker (fake engine: the model is
beside the point here; the engines have their own contract suite)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from llmops.config import FakePool
from llmops.sdk import LLMOpsClient, LLMOpsError
from schemas import InferenceResult, PromptRef, utc_now
from services.inference.engines.fake import FakeEngine, FakeEngineConfig
from tests.integration.platform import running_platform

pytestmark = pytest.mark.integration


async def test_generate_round_trip_with_usage_and_timings(bootstrap: str) -> None:
    async with running_platform(bootstrap) as platform, LLMOpsClient(bootstrap, app="t") as client:
        result = await client.generate([{"role": "user", "content": "one two three"}], max_tokens=5)
    pool = platform.settings.pools[0]
    assert result.pool == pool.name and result.engine == "fake"
    assert result.finish_reason in {"stop", "length"}
    assert result.text
    assert result.usage.input_tokens > 0 and 0 < result.usage.output_tokens <= 5
    assert result.timings.total_ms >= result.timings.ttft_ms >= 0
    assert result.variant == "default" and result.route_reason


async def test_many_concurrent_requests_each_get_exactly_one_reply(bootstrap: str) -> None:
    async with running_platform(bootstrap), LLMOpsClient(bootstrap, app="t") as client:
        results = await asyncio.gather(
            *(
                client.generate([{"role": "user", "content": f"req {i}"}], max_tokens=4)
                for i in range(200)
            )
        )
    assert len({r.request_id for r in results}) == 200
    assert client.duplicates == 0


async def test_named_prompt_goes_through_the_experiment(bootstrap: str) -> None:
    async with running_platform(bootstrap), LLMOpsClient(bootstrap, app="t") as client:
        results = await asyncio.gather(
            *(
                client.generate(
                    prompt="greet", variables={"name": "Ada"}, user_id=f"u{i}", max_tokens=3
                )
                for i in range(40)
            )
        )
    variants = {r.variant for r in results}
    assert variants == {"control", "treatment"}
    for r in results:
        assert r.prompt_name == "greet" and r.experiment == "greet-ab"
        assert r.prompt_version == (1 if r.variant == "control" else 2)


async def test_streaming_yields_ordered_pieces_that_make_the_text(bootstrap: str) -> None:
    engines = {}
    pool = FakePool(name=f"stream-{uuid.uuid4().hex[:6]}", model="fake")
    engines[pool.name] = FakeEngine(model="fake", config=FakeEngineConfig(burst=1))
    async with running_platform(bootstrap, [pool], engines), LLMOpsClient(bootstrap) as client:
        pieces = [
            p
            async for p in client.stream([{"role": "user", "content": "a b c d e f"}], max_tokens=6)
        ]
        full = await client.generate([{"role": "user", "content": "a b c d e f"}], max_tokens=6)
    assert len(pieces) == 6
    assert "".join(pieces) == full.text


async def test_unknown_prompt_gets_an_error_reply(bootstrap: str) -> None:
    async with running_platform(bootstrap), LLMOpsClient(bootstrap) as client:
        with pytest.raises(LLMOpsError, match="unknown prompt 'missing'") as info:
            await client.generate(prompt="missing", timeout_s=30)
    assert info.value.result.error is not None
    assert info.value.result.error.kind == "invalid_request"


async def test_unservable_model_gets_an_unroutable_reply(bootstrap: str) -> None:
    async with running_platform(bootstrap), LLMOpsClient(bootstrap) as client:
        with pytest.raises(LLMOpsError, match="no configured pool serves model 'gpt-9'") as info:
            await client.generate([{"role": "user", "content": "x"}], model="gpt-9", timeout_s=30)
    assert info.value.result.error is not None and info.value.result.error.kind == "unroutable"


async def test_expired_deadline_gets_a_timeout_reply_without_generation(bootstrap: str) -> None:
    async with running_platform(bootstrap) as platform, LLMOpsClient(bootstrap) as client:
        request = client.build_request([{"role": "user", "content": "late"}])
        request = request.model_copy(update={"deadline": utc_now() - timedelta(seconds=1)})
        pending = await client.submit(request)
        result: InferenceResult = await client.wait(request.request_id, pending, 30)
    assert result.finish_reason == "timeout"
    assert result.error is not None and result.error.kind == "deadline_exceeded"
    assert all(w.served == 0 for w in platform.workers.values())


async def test_deadline_mid_generation_aborts_and_replies_timeout(bootstrap: str) -> None:
    pool = FakePool(name=f"slow-{uuid.uuid4().hex[:6]}", model="fake")
    slow = FakeEngine(model="fake", config=FakeEngineConfig(tpot_ms=200))
    async with (
        running_platform(bootstrap, [pool], {pool.name: slow}),
        LLMOpsClient(bootstrap) as client,
    ):
        request = client.build_request([{"role": "user", "content": "x"}], max_tokens=100)
        request = request.model_copy(update={"deadline": utc_now() + timedelta(seconds=1.0)})
        pending = await client.submit(request)
        result = await client.wait(request.request_id, pending, 30)
    assert result.finish_reason == "timeout"
    assert result.usage.output_tokens < 100
    assert slow.stats().running == 0  # the engine stopped generating it


async def test_prompt_ref_contract_round_trip(bootstrap: str) -> None:
    # A request built by hand (as any language would) with a pinned version.
    async with running_platform(bootstrap), LLMOpsClient(bootstrap) as client:
        request = client.build_request(prompt="greet", variables={"name": "Bo"}, version=2)
        assert request.prompt == PromptRef(name="greet", version=2, variables={"name": "Bo"})
        pending = await client.submit(request)
        result = await client.wait(request.request_id, pending, 30)
    assert result.prompt_version == 2 and result.variant == "v2"
