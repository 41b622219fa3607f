"""The real transformers engine (tiny in-memory model) under faults: a request it cannot take
fails alone, and a generation loop that dies fails what it had and says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from transformers import GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig
from transformers.generation.continuous_batching.requests import GenerationOutput

from schemas import ChatMessage, PromptRequest, RoutedRequest, SamplingParams, utc_now
from services.inference.engines.base import EngineError, RequestRejectedError
from services.inference.engines.sampling import PerRequestSampling, sampling_kwargs
from services.inference.engines.streaming import encode_prompt
from services.inference.engines.transformers_engine import TransformersEngine
from services.inference.models import build_tiny_model, build_tiny_tokenizer
from services.inference.service import generation_request
from tests.engine_kit import TINY_CONFIG, breakable_tiny_engine, collect, request

pytestmark = pytest.mark.integration

TOKENIZER = build_tiny_tokenizer()
MODEL = build_tiny_model(TOKENIZER)


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[TransformersEngine]:
    eng = TransformersEngine("tiny-random", lambda: (MODEL, TOKENIZER), TINY_CONFIG)
    await eng.start()
    yield eng
    await eng.stop()


def _routed(sampling: SamplingParams) -> RoutedRequest:
    """The issue's request as the inference consumer would see it, had it slipped past the
    schema: model_construct skips every bound."""
    messages = [ChatMessage(role="user", content="hi")]
    req = PromptRequest.model_construct(
        request_id="slipped", messages=messages, sampling=sampling, adapter=None
    )
    return RoutedRequest.model_construct(
        request=req, messages=messages, pool="p", model="tiny-random", routed_at=utc_now()
    )


async def test_top_k_past_int32_fails_alone_while_a_neighbour_completes(
    engine: TransformersEngine,
) -> None:
    sampling = SamplingParams.model_construct(
        max_tokens=2, temperature=0.7, top_p=1.0, top_k=2**31, seed=None, stop=[]
    )
    bad = generation_request(_routed(sampling))
    assert bad.top_k == 2**31
    good = request("a neighbour in the same batch", max_tokens=12)
    outcomes = await asyncio.gather(
        collect(engine, bad), collect(engine, good), return_exceptions=True
    )
    assert isinstance(outcomes[0], RequestRejectedError) and "top_k" in str(outcomes[0])
    assert not isinstance(outcomes[1], BaseException)
    assert outcomes[1].final.output_tokens == 12
    assert engine.failure() is None and engine.stats().extra["healthy"] == 1.0
    again = await collect(engine, request("still serving", max_tokens=3))
    assert again.final.output_tokens == 3


async def test_the_manager_fails_bad_knobs_alone_when_they_reach_it() -> None:
    """Past the engine's own check (added to the manager directly), the manager's admission
    check refuses the request alone; its generation loop serves on."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    manager = model.init_continuous_batching(
        generation_config=_greedy_config(), continuous_batching_config=_small_cache()
    )
    manager.logit_processor = PerRequestSampling()
    manager.start()
    try:
        ids = encode_prompt(tokenizer, (("user", "hello there"),))
        knobs = sampling_kwargs(0.7, 1.0, None, 1) | {"top_k": 2**31}
        manager.add_request(ids, request_id="bad", max_new_tokens=4, **knobs)
        manager.add_request(
            ids, request_id="good", max_new_tokens=4, **sampling_kwargs(0.7, 1.0, 5, 1)
        )
        results: dict[str, GenerationOutput] = {}
        while len(results) < 2:
            out = await asyncio.to_thread(manager.get_result, None, 30.0)
            assert out is not None, "the generation loop stopped answering"
            if out.is_finished() or out.error is not None:
                results[out.request_id] = out
        assert results["bad"].error is not None and "top_k" in results["bad"].error
        assert results["good"].error is None and len(results["good"].generated_tokens) == 4
        assert manager.background_thread_status.fatal_error is None
    finally:
        manager.stop(block=True, timeout=10)


def _greedy_config() -> GenerationConfig:
    return GenerationConfig(  # type: ignore[no-untyped-call]
        do_sample=False, max_new_tokens=16, eos_token_id=-1, pad_token_id=0
    )


def _small_cache() -> ContinuousBatchingConfig:
    return ContinuousBatchingConfig(
        page_size=32,
        num_blocks=16,
        max_batch_tokens=128,
        max_requests_per_batch=4,
        max_memory_percent=0.5,
        auto_switch_to_flash=False,
        use_async_batching=False,
    )


async def test_a_dying_loop_fails_its_requests_and_reports_the_failure() -> None:
    eng, break_model = breakable_tiny_engine()
    await eng.start()
    try:
        assert eng.failure() is None
        streams = [eng.generate(request(f"long answer {i}", max_tokens=400)) for i in range(3)]
        for stream in streams:
            assert (await anext(stream)).finish is None  # all three are in flight
        break_model()
        for stream in streams:
            with pytest.raises(EngineError, match="simulated kernel failure"):
                async for _ in stream:
                    pass
        for _ in range(200):  # the reader notices the dead loop within its poll interval
            if eng.failure() is not None:
                break
            await asyncio.sleep(0.05)
        assert "simulated kernel failure" in (eng.failure() or "")
        assert eng.stats().extra["healthy"] == 0.0
        with pytest.raises(EngineError):
            await collect(eng, request(max_tokens=2))
    finally:
        await eng.stop()
