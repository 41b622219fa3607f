"""The fake engine: predictable output, failures on demand, cheap at any concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from services.inference.engines.base import EngineError
from services.inference.engines.fake import (
    FAIL_MARKER,
    FAIL_MID_MARKER,
    FakeEngine,
    FakeEngineConfig,
    fake_words,
)
from tests.engine_kit import assert_well_formed, collect, request


async def _until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until `condition` holds (bounded, so a bug fails instead of hanging)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def _started(config: FakeEngineConfig | None = None) -> FakeEngine:
    engine = FakeEngine(model="m", config=config)
    await engine.start()
    return engine


def test_words_cycle_from_a_seeded_start() -> None:
    assert fake_words(request("a b c")) == ["a", "b", "c"]
    assert fake_words(request("a b c", seed=1)) == ["b", "c", "a"]
    assert fake_words(request("a b c", seed=5)) == ["c", "a", "b"]
    assert fake_words(request("   ")) == ["lorem", "ipsum", "dolor", "sit", "amet"]


async def test_output_and_usage_are_exact() -> None:
    engine = await _started()
    result = await collect(engine, request("red green blue", max_tokens=5))
    assert result.text == "red green blue red green"
    assert result.final.finish == "length"
    assert (result.final.input_tokens, result.final.output_tokens) == (3, 5)
    stats = engine.stats()
    assert (stats.completed, stats.output_tokens, stats.running, stats.waiting) == (1, 5, 0, 0)


async def test_stop_text_is_cut_and_finish_is_stop() -> None:
    engine = await _started()
    result = await collect(engine, request("red green blue", max_tokens=9, stop=("blue",)))
    assert (result.text, result.final.finish) == ("red green ", "stop")
    assert result.final.output_tokens == 3  # counted up to the token that completed the stop


async def test_zero_tpot_emits_few_chunks() -> None:
    engine = await _started(FakeEngineConfig(burst=32))
    result = await collect(engine, request("w", max_tokens=100))
    assert_well_formed(result.chunks)
    assert len(result.chunks) <= 5  # 4 bursts of at most 32 tokens, plus the final chunk
    assert result.final.output_tokens == 100


async def test_positive_tpot_streams_token_by_token() -> None:
    engine = await _started(FakeEngineConfig(ttft_ms=1, tpot_ms=1))
    result = await collect(engine, request("a b", max_tokens=4))
    assert [c.output_tokens for c in result.chunks] == [1, 2, 3, 4, 4]
    assert [c.text for c in result.chunks] == ["a", " b", " a", " b", ""]


async def test_abort_while_waiting_for_the_first_token() -> None:
    engine = await _started(FakeEngineConfig(ttft_ms=60_000))
    req = request("never answered", max_tokens=5)
    task = asyncio.create_task(collect(engine, req))
    await _until(lambda: engine.stats().waiting == 1)
    await engine.abort(req.request_id)
    result = await task
    assert (result.text, result.final.finish, result.final.output_tokens) == ("", "abort", 0)
    assert engine.stats().aborted == 1


async def test_fail_marker_raises_before_any_chunk() -> None:
    engine = await _started()
    with pytest.raises(EngineError):
        await collect(engine, request(f"please {FAIL_MARKER}"))
    assert engine.stats().failed == 1
    assert engine.stats().waiting == 0


async def test_fail_mid_marker_raises_after_the_first_chunk() -> None:
    engine = await _started(FakeEngineConfig(tpot_ms=1))
    stream = engine.generate(request(f"go {FAIL_MID_MARKER}", max_tokens=10))
    first = await anext(stream)
    assert first.finish is None and first.text
    with pytest.raises(EngineError):
        await anext(stream)
    assert engine.stats().running == 0


@pytest.mark.parametrize(("rate", "failures"), [(0.0, 0), (1.0, 20)])
async def test_failure_rate(rate: float, failures: int) -> None:
    engine = await _started(FakeEngineConfig(failure_rate=rate))
    outcomes = await asyncio.gather(
        *(collect(engine, request(max_tokens=1)) for _ in range(20)), return_exceptions=True
    )
    assert sum(isinstance(o, EngineError) for o in outcomes) == failures


async def test_failure_rate_is_seeded() -> None:
    async def pattern() -> list[bool]:
        engine = await _started(FakeEngineConfig(failure_rate=0.5, failure_seed=3))
        outcomes = [
            await asyncio.gather(collect(engine, request(max_tokens=1)), return_exceptions=True)
            for _ in range(30)
        ]
        return [isinstance(o[0], EngineError) for o in outcomes]

    first = await pattern()
    assert first == await pattern()
    assert 0 < sum(first) < 30


async def test_thousand_concurrent_requests() -> None:
    engine = await _started()
    results = await asyncio.gather(
        *(collect(engine, request(f"prompt {i}", max_tokens=8)) for i in range(1000))
    )
    assert all(r.final.output_tokens == 8 and r.final.finish == "length" for r in results)
    assert engine.stats().completed == 1000


async def test_same_request_id_twice_is_aborted_in_both_streams() -> None:
    engine = await _started(FakeEngineConfig(ttft_ms=60_000))
    req = request("twice", max_tokens=3)
    tasks = [asyncio.create_task(collect(engine, req)) for _ in range(2)]
    await _until(lambda: engine.stats().waiting == 2)
    await engine.abort(req.request_id)
    assert [r.final.finish for r in await asyncio.gather(*tasks)] == ["abort", "abort"]


async def test_zero_max_tokens_finishes_at_once() -> None:
    engine = await _started()
    result = await collect(engine, request("x", max_tokens=0))
    assert [(c.text, c.output_tokens, c.finish) for c in result.chunks] == [("", 0, "length")]
