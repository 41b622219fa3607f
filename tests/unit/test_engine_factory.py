"""The factory builds the engine a pool names, without loading anything yet."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llmops.config import PoolConfig, VllmOptions
from services.inference.engines.factory import (
    EngineUnavailableError,
    create_engine,
    model_directory,
)
from services.inference.engines.fake import FakeEngine
from services.inference.engines.transformers_engine import TransformersEngine
from services.inference.engines.vllm_engine import VllmEngine
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


def test_vllm_pool_gets_an_unstarted_vllm_engine_without_importing_vllm(tmp_path: Path) -> None:
    options = VllmOptions(tensor_parallel_size=2, max_model_len=1024, enforce_eager=True)
    pool = PoolConfig(name="p", engine="vllm", model="tiny-random", capacity=12, vllm=options)
    engine = create_engine(pool, tmp_path)
    assert isinstance(engine, VllmEngine)
    assert (engine.name, engine.model, engine.capacity) == ("vllm", "tiny-random", 12)
    assert engine.options == options
    assert "vllm" not in sys.modules  # imported only when the engine starts
    assert not (tmp_path / "models").exists()  # nor is the model written yet
    assert issubclass(EngineUnavailableError, NotImplementedError)


def test_model_directory_writes_the_tiny_model_once(tmp_path: Path) -> None:
    path = model_directory("tiny-random", tmp_path)
    assert path == tmp_path / "models" / "tiny-random"
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert model_directory("tiny-random", tmp_path) == path
    assert (path / "config.json").stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == ["tiny-random"]  # no work dirs left
    with pytest.raises(FileNotFoundError):
        model_directory(str(tmp_path / "nowhere"), tmp_path)
