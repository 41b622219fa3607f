"""The factory builds the engine a pool names, without loading anything yet."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import PoolConfig
from services.inference.engines.factory import EngineUnavailableError, create_engine
from services.inference.engines.fake import FakeEngine
from services.inference.engines.transformers_engine import TransformersEngine
from tests.engine_kit import collect, request


async def test_fake_pool_gets_a_fake_engine_with_its_timings(tmp_path: Path) -> None:
    pool = PoolConfig(name="p", engine="fake", model="m1", fake_ttft_ms=5, fake_tpot_ms=2)
    engine = create_engine(pool, tmp_path)
    assert isinstance(engine, FakeEngine)
    assert (engine.name, engine.model) == ("fake", "m1")
    assert (engine.config.ttft_ms, engine.config.tpot_ms) == (5, 2)
    await engine.start()
    assert (await collect(engine, request("a b", max_tokens=2))).text == "a b"


async def test_transformers_pool_loads_its_model_on_start(tmp_path: Path) -> None:
    pool = PoolConfig(name="p", engine="transformers", model="tiny-random", capacity=4)
    engine = create_engine(pool, tmp_path)
    assert isinstance(engine, TransformersEngine)
    assert (engine.name, engine.model) == ("transformers", "tiny-random")
    assert engine.config.max_batch_requests == 4
    assert engine.config.kv_cache_tokens == 4 * engine.config.max_model_len
    big = create_engine(PoolConfig(name="b", engine="transformers", capacity=1024), tmp_path)
    assert isinstance(big, TransformersEngine)
    assert big.config.kv_cache_tokens == 65_536  # bounded
    await engine.start()
    try:
        assert (await collect(engine, request(max_tokens=3))).final.output_tokens == 3
    finally:
        await engine.stop()


def test_vllm_is_not_there_yet(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match="issue 3"):
        create_engine(PoolConfig(name="p", engine="vllm"), tmp_path)
    assert issubclass(EngineUnavailableError, NotImplementedError)
