"""The engine contract, checked on every engine: fake, transformers and (in its own venv) vllm.

The engines come from `LLMOPS_TEST_ENGINES` (see tests/engine_kit.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from services.inference.engines.base import Engine, EngineError, RequestRejectedError
from services.inference.engines.fake import fake_words
from tests.engine_kit import (
    ENGINE_KINDS,
    assert_well_formed,
    collect,
    make_engine,
    request,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=ENGINE_KINDS)
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    eng = make_engine(request.param)
    await eng.start()
    yield eng
    await eng.stop()


async def test_identity(engine: Engine) -> None:
    assert engine.name in ENGINE_KINDS
    assert engine.model in ("fake-model", "tiny-random")


async def test_stream_is_ordered_with_one_final_chunk(engine: Engine) -> None:
    result = await collect(engine, request("Describe the stream of events", max_tokens=20))
    assert_well_formed(result.chunks)
    assert result.final.finish in ("stop", "length")
    assert result.text


async def test_fake_text_is_the_prompt_cycled() -> None:
    eng = make_engine("fake")
    await eng.start()
    req = request("alpha beta gamma", max_tokens=7)
    result = await collect(eng, req)
    words = fake_words(req)
    assert result.text == " ".join(words[i % 3] for i in range(7))
    await eng.stop()


@pytest.mark.parametrize("max_tokens", [1, 5, 17])
async def test_max_tokens_is_honoured(engine: Engine, max_tokens: int) -> None:
    result = await collect(engine, request("Count some words for me", max_tokens=max_tokens))
    assert_well_formed(result.chunks)
    assert result.final.finish == "length"
    assert result.final.output_tokens == max_tokens


async def test_stop_sequence_cuts_the_text(engine: Engine) -> None:
    prompt = "The quick brown fox jumps over the lazy dog"
    full = (await collect(engine, request(prompt, max_tokens=24))).text
    middle = len(full) // 2
    stop = full[middle : middle + 3]
    expected = full[: full.find(stop)]
    result = await collect(engine, request(prompt, max_tokens=24, stop=(stop,)))
    assert_well_formed(result.chunks)
    assert result.final.finish == "stop"
    assert result.text == expected
    assert stop not in result.text
    assert result.final.output_tokens <= 24


async def test_earliest_of_several_stops_wins(engine: Engine) -> None:
    prompt = "one two three four five six seven"
    full = (await collect(engine, request(prompt, max_tokens=24))).text
    early, late = full[2:4], full[len(full) - 3 :]
    cut = min(full.find(early), full.find(late))
    result = await collect(engine, request(prompt, max_tokens=24, stop=(late, early)))
    assert result.final.finish == "stop"
    assert result.text == full[:cut]


async def test_abort_mid_stream(engine: Engine) -> None:
    before = engine.stats().aborted
    req = request("Write a very long story about a lighthouse", max_tokens=400)
    stream = engine.generate(req)
    chunks = [await anext(stream)]
    assert chunks[0].finish is None
    await engine.abort(req.request_id)
    chunks += [chunk async for chunk in stream]
    assert_well_formed(chunks)
    assert chunks[-1].finish == "abort"
    assert chunks[-1].output_tokens < 400
    assert engine.stats().aborted == before + 1
    again = await collect(engine, request("still serving?", max_tokens=3))
    assert again.final.finish == "length"


async def test_abort_of_an_unknown_request_is_a_no_op(engine: Engine) -> None:
    await engine.abort("no-such-request")
    assert (await collect(engine, request(max_tokens=2))).final.output_tokens == 2


async def test_greedy_is_deterministic(engine: Engine) -> None:
    first = await collect(engine, request("Repeat after me please", max_tokens=20))
    second = await collect(engine, request("Repeat after me please", max_tokens=20))
    assert first.text == second.text
    assert first.final.output_tokens == second.final.output_tokens


async def test_seeded_sampling_is_deterministic(engine: Engine) -> None:
    def sampled(seed: int) -> object:
        return request(
            "Pick some random words now", max_tokens=20, temperature=0.9, top_p=0.95, seed=seed
        )

    first = await collect(engine, sampled(11))  # type: ignore[arg-type]
    second = await collect(engine, sampled(11))  # type: ignore[arg-type]
    other = await collect(engine, sampled(12))  # type: ignore[arg-type]
    assert first.text == second.text
    assert first.text != other.text


async def test_sixteen_concurrent_requests(engine: Engine) -> None:
    reqs = [
        request(f"request number {i} asks about topic {i * 7}", max_tokens=12) for i in range(16)
    ]
    alone = [await collect(engine, r) for r in reqs]
    together = await asyncio.gather(*(collect(engine, r) for r in reqs))
    for solo, batched in zip(alone, together, strict=True):
        assert_well_formed(batched.chunks)
        assert batched.final.finish == "length"
        assert batched.final.output_tokens == 12
        assert batched.text == solo.text  # batching never changes a greedy output
    assert engine.stats().running == engine.stats().waiting == 0


async def test_usage_counts(engine: Engine) -> None:
    before = engine.stats()
    short = await collect(engine, request("short prompt", max_tokens=4))
    long = await collect(engine, request("a much longer prompt " * 8, max_tokens=6))
    assert 0 < short.final.input_tokens < long.final.input_tokens
    assert (short.final.output_tokens, long.final.output_tokens) == (4, 6)
    after = engine.stats()
    assert after.completed == before.completed + 2
    assert after.output_tokens == before.output_tokens + 10


@pytest.mark.parametrize("kind", ENGINE_KINDS)
async def test_clean_stop(kind: str) -> None:
    threads_before = set(threading.enumerate())
    eng = make_engine(kind)
    await eng.start()
    assert eng.stats().extra["healthy"] == 1.0
    stream = eng.generate(request("a long answer please", max_tokens=400))
    assert (await anext(stream)).finish is None
    await eng.stop()
    rest = [chunk async for chunk in stream]
    assert rest[-1].finish == "abort"
    assert eng.stats().extra["healthy"] == 0.0
    with pytest.raises(EngineError):
        await collect(eng, request(max_tokens=2))
    await eng.stop()  # idempotent
    leftover = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert leftover == []


@pytest.mark.parametrize("kind", ENGINE_KINDS)
async def test_generate_before_start_fails(kind: str) -> None:
    eng = make_engine(kind)
    with pytest.raises(EngineError):
        await collect(eng, request(max_tokens=2))
    await eng.stop()  # stopping an engine that never started is harmless


@pytest.mark.parametrize(
    "knobs",
    [
        {"top_k": 2**31},  # overflowed the int32 tensor in the transformers engine's loop
        {"top_k": -5},
        {"temperature": float("nan"), "seed": 1},
        {"temperature": float("inf")},
        {"top_p": 0.0},
        {"seed": 2**64},
        {"max_tokens": 2**40},
    ],
    ids=[
        "top_k-int32",
        "top_k-negative",
        "temperature-nan",
        "temperature-inf",
        "top_p-0",
        "seed-2^64",
        "max_tokens-2^40",
    ],
)
async def test_a_request_the_engine_cannot_take_fails_alone(
    engine: Engine, knobs: dict[str, object]
) -> None:
    good = request("the good neighbour", max_tokens=8)
    bad = request("the bad neighbour", **{"max_tokens": 4, "temperature": 0.7, **knobs})
    outcomes = await asyncio.gather(
        collect(engine, bad), collect(engine, good), return_exceptions=True
    )
    assert isinstance(outcomes[0], RequestRejectedError)
    assert not isinstance(outcomes[1], BaseException)
    assert outcomes[1].final.finish == "length" and outcomes[1].final.output_tokens == 8
    assert engine.failure() is None and engine.stats().extra["healthy"] == 1.0
    assert (await collect(engine, request(max_tokens=3))).final.output_tokens == 3
