"""What only the transformers engine does: EOS, token ids, per-request sampling, templates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import torch

from services.inference.engines.base import EngineError
from services.inference.engines.streaming import encode_prompt, render_prompt
from services.inference.engines.transformers_engine import (
    TransformersEngine,
    TransformersEngineConfig,
)
from services.inference.models import build_tiny_model, build_tiny_tokenizer
from tests.engine_kit import (
    TINY_CONFIG,
    assert_well_formed,
    breakable_tiny_engine,
    collect,
    request,
)

pytestmark = pytest.mark.integration

TOKENIZER = build_tiny_tokenizer()
MODEL = build_tiny_model(TOKENIZER)


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[TransformersEngine]:
    eng = TransformersEngine("tiny-random", lambda: (MODEL, TOKENIZER), TINY_CONFIG)
    await eng.start()
    yield eng
    await eng.stop()


def _reference(prompt: str, max_tokens: int) -> str:
    """Greedy text from plain `model.generate`, the engine's oracle."""
    ids = encode_prompt(TOKENIZER, (("user", prompt),))
    with torch.no_grad():
        out = MODEL.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_tokens,
            do_sample=False,
        )
    return str(TOKENIZER.decode(out[0][len(ids) :], skip_special_tokens=True))


@pytest.mark.parametrize("prompt", ["The capital of France is", "héllo wörld 🚀", "42"])
async def test_greedy_text_equals_plain_generate(engine: TransformersEngine, prompt: str) -> None:
    result = await collect(engine, request(prompt, max_tokens=24))
    assert_well_formed(result.chunks)
    assert result.text == _reference(prompt, 24)


async def test_input_tokens_count_token_ids(engine: TransformersEngine) -> None:
    prompt = "Count my tokens, please."
    result = await collect(engine, request(prompt, max_tokens=2))
    assert result.final.input_tokens == len(encode_prompt(TOKENIZER, (("user", prompt),)))


async def test_eos_ends_with_stop() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    # Bias the output layer so EOS always wins: the first token ends the output.
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = 100.0
    model.lm_head = head
    eng = TransformersEngine("tiny-random", lambda: (model, tokenizer), TINY_CONFIG)
    await eng.start()
    try:
        result = await collect(eng, request("anything", max_tokens=10))
    finally:
        await eng.stop()
    assert result.final.finish == "stop"
    assert result.final.output_tokens == 1  # the EOS token is counted, never shown
    assert result.text == ""


async def test_top_k_one_sampling_equals_greedy(engine: TransformersEngine) -> None:
    prompt = "Sampling with a single candidate"
    greedy = await collect(engine, request(prompt, max_tokens=16))
    sampled = await collect(engine, request(prompt, max_tokens=16, temperature=1.5, top_k=1))
    assert sampled.text == greedy.text


async def test_sampling_differs_from_greedy_and_mixes_in_one_batch(
    engine: TransformersEngine,
) -> None:
    prompt = "Mixed batch of greedy and sampled requests"
    greedy_alone = await collect(engine, request(prompt, max_tokens=16))
    sampled_alone = await collect(engine, request(prompt, max_tokens=16, temperature=1.0, seed=5))
    greedy, sampled = await asyncio.gather(
        collect(engine, request(prompt, max_tokens=16)),
        collect(engine, request(prompt, max_tokens=16, temperature=1.0, seed=5)),
    )
    assert greedy.text == greedy_alone.text
    assert sampled.text == sampled_alone.text  # the seed, not the batch, decides
    assert sampled.text != greedy.text


async def test_prompt_longer_than_the_model_takes_fails(engine: TransformersEngine) -> None:
    failed = engine.stats().failed
    with pytest.raises(EngineError, match="prompt has"):
        await collect(engine, request("word " * 600, max_tokens=4))
    assert engine.stats().failed == failed + 1


async def test_max_tokens_is_capped_by_the_model_length() -> None:
    config = TransformersEngineConfig(max_model_len=24, max_batch_tokens=64, kv_cache_tokens=512)
    eng = TransformersEngine("tiny-random", lambda: (MODEL, TOKENIZER), config)
    await eng.start()
    try:
        req = request("seven words in this short prompt", max_tokens=100)
        result = await collect(eng, req)
    finally:
        await eng.stop()
    n_prompt = len(encode_prompt(TOKENIZER, req.messages))
    assert result.final.finish == "length"
    assert result.final.output_tokens == 24 - n_prompt


async def test_leaving_a_stream_early_frees_the_request(engine: TransformersEngine) -> None:
    stream = engine.generate(request("I will stop listening soon", max_tokens=300))
    assert (await anext(stream)).finish is None
    await stream.aclose()
    stats = engine.stats()
    assert stats.running == stats.waiting == 0
    assert (await collect(engine, request(max_tokens=3))).final.output_tokens == 3


def test_chat_template_is_used_when_the_tokenizer_has_one() -> None:
    tokenizer = build_tiny_tokenizer()
    messages = (("system", "Be brief."), ("user", "Hi"))
    assert render_prompt(tokenizer, messages) == "Be brief.\nHi\n"
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    assert render_prompt(tokenizer, messages) == "<system>Be brief.\n<user>Hi\n<assistant>"
    ids = encode_prompt(tokenizer, messages)
    assert TOKENIZER.decode(ids) == "<system>Be brief.\n<user>Hi\n<assistant>"


async def test_a_crashing_model_fails_requests_and_marks_the_engine_unhealthy() -> None:
    eng, break_model = breakable_tiny_engine()
    await eng.start()
    try:
        assert eng.stats().extra["healthy"] == 1.0
        break_model()
        with pytest.raises(EngineError, match="simulated kernel failure"):
            await collect(eng, request(max_tokens=5))
        for _ in range(100):  # the reader notices the dead loop within its poll interval
            if eng.stats().extra["healthy"] == 0.0:
                break
            await asyncio.sleep(0.05)
        assert eng.stats().extra["healthy"] == 0.0
        with pytest.raises(EngineError, match="not running"):
            await collect(eng, request(max_tokens=5))
        assert eng.stats().failed == 2
    finally:
        await eng.stop()


async def test_engine_threads_are_daemons(engine: TransformersEngine) -> None:
    # A consumer that dies without stop() must still exit: no non-daemon thread of ours.
    import threading

    ours = [
        t
        for t in threading.enumerate()
        if t.name == "cb-reader" or "_run_generation_loop" in t.name
    ]
    assert len(ours) >= 2
    assert all(t.daemon for t in ours)


async def test_queued_outputs_coalesce_to_the_newest_and_signals_win() -> None:
    from transformers.generation.continuous_batching.requests import GenerationOutput

    from services.inference.engines.streaming import ABORT
    from services.inference.engines.transformers_engine import _latest

    def out(tokens: list[int], error: str | None = None) -> GenerationOutput:
        return GenerationOutput(request_id="r", generated_tokens=tokens, error=error)

    queue: asyncio.Queue[object] = asyncio.Queue()
    for item in (out([1, 2]), out([1, 2, 3])):
        queue.put_nowait(item)
    output, signal = _latest(queue, out([1]))  # type: ignore[arg-type]
    assert output is not None and output.generated_tokens == [1, 2, 3] and signal is None
    for item in (ABORT, out([1, 2, 3, 4], error="failed by a stopping manager")):
        queue.put_nowait(item)
    output, signal = _latest(queue, out([1, 2]))  # type: ignore[arg-type]
    assert output is not None and output.generated_tokens == [1, 2]  # the one before the abort
    assert signal is ABORT
    assert queue.empty()


async def test_more_requests_than_the_kv_cache_holds_all_complete() -> None:
    # 4 requests of ~55 tokens each against a 128-token cache: the scheduler must queue (and
    # re-prefill) requests; every one still completes with the text it gets alone.
    config = TransformersEngineConfig(
        max_model_len=128, kv_cache_tokens=128, page_size=32, max_batch_tokens=64
    )
    eng = TransformersEngine("tiny-random", lambda: (MODEL, TOKENIZER), config)
    await eng.start()
    try:
        reqs = [request(f"prompt {i} " * 5, max_tokens=40) for i in range(4)]
        alone = [await collect(eng, r) for r in reqs]
        together = await asyncio.gather(*(collect(eng, r) for r in reqs))
    finally:
        await eng.stop()
    assert [r.final.output_tokens for r in together] == [40] * 4
    assert [r.text for r in together] == [r.text for r in alone]


async def test_the_engine_computes_in_its_configured_dtype() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer).to(torch.bfloat16)
    eng = TransformersEngine("tiny-random", lambda: (model, tokenizer), TINY_CONFIG)
    await eng.start()
    try:
        assert TINY_CONFIG.dtype == "float32"
        assert model.dtype == torch.float32  # cast in place at start
        assert (await collect(eng, request(max_tokens=3))).final.output_tokens == 3
    finally:
        await eng.stop()


async def test_threads_knob_sets_torch_threads() -> None:
    from dataclasses import replace

    before = torch.get_num_threads()
    eng = TransformersEngine(
        "tiny-random", lambda: (MODEL, TOKENIZER), replace(TINY_CONFIG, threads=1)
    )
    try:
        await eng.start()
        assert torch.get_num_threads() == 1
        assert (await collect(eng, request(max_tokens=2))).final.output_tokens == 2
    finally:
        await eng.stop()
        torch.set_num_threads(before)
