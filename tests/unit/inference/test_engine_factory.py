"""The factory builds the engine a pool names, without loading anything yet."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from llmops.config import FakePool, TransformersPool, VllmOptions, VllmPool
from services.inference.engines.base import EngineError
from services.inference.engines.factory import (
    EngineUnavailableError,
    create_engine,
    model_directory,
)
from services.inference.engines.fake import FakeEngine
from services.inference.engines.transformers_engine import (
    TransformersEngine,
    TransformersEngineConfig,
    resolve_device,
)
from services.inference.engines.vllm_engine import VllmEngine
from tests.engine_kit import collect, request


async def test_fake_pool_gets_a_fake_engine_with_its_timings(tmp_path: Path) -> None:
    pool = FakePool(name="p", model="m1", fake_ttft_ms=5, fake_tpot_ms=2)
    engine = create_engine(pool, tmp_path)
    assert isinstance(engine, FakeEngine)
    assert (engine.name, engine.model) == ("fake", "m1")
    assert (engine.config.ttft_ms, engine.config.tpot_ms) == (5, 2)
    await engine.start()
    assert (await collect(engine, request("a b", max_tokens=2))).text == "a b"


async def test_transformers_pool_loads_its_model_on_start(tmp_path: Path) -> None:
    pool = TransformersPool(name="p", model="tiny-random", capacity=4)
    engine = create_engine(pool, tmp_path)
    assert isinstance(engine, TransformersEngine)
    assert (engine.name, engine.model) == ("transformers", "tiny-random")
    assert engine.config.max_batch_requests == 4
    assert engine.config.kv_cache_tokens == 4 * engine.config.max_model_len
    big = create_engine(TransformersPool(name="b", capacity=1024), tmp_path)
    assert isinstance(big, TransformersEngine)
    assert big.config.kv_cache_tokens == 65_536  # bounded
    await engine.start()
    try:
        assert (await collect(engine, request(max_tokens=3))).final.output_tokens == 3
    finally:
        await engine.stop()


def test_vllm_pool_gets_an_unstarted_vllm_engine_without_importing_vllm(tmp_path: Path) -> None:
    options = VllmOptions(tensor_parallel_size=2, max_model_len=1024, enforce_eager=True)
    pool = VllmPool(name="p", model="tiny-random", capacity=12, vllm=options)
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


def _missing_gpu() -> str:
    """A CUDA device this machine does not have."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def test_resolve_device_names_what_is_missing() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(EngineError, match="CUDA GPU"):
        resolve_device(_missing_gpu())
    with pytest.raises(EngineError, match="only 'cpu' and 'cuda"):
        resolve_device("meta")
    with pytest.raises(EngineError, match="unknown torch device"):
        resolve_device("gpu0")


async def test_an_engine_on_a_missing_device_fails_to_start_before_loading() -> None:
    loads: list[str] = []

    def load() -> Any:
        loads.append("loaded")
        raise AssertionError("the model must not be loaded for a device that is not there")

    engine = TransformersEngine("m", load, TransformersEngineConfig(device=_missing_gpu()))
    with pytest.raises(EngineError, match="CUDA GPU"):
        await engine.start()
    assert loads == []
    assert engine.stats().extra["healthy"] == 0.0


def test_a_gpu_pool_gets_its_device_and_bfloat16(tmp_path: Path) -> None:
    pool = TransformersPool(name="g", model="random-llama-1b", device="cuda:1")
    engine = create_engine(pool, tmp_path)
    assert isinstance(engine, TransformersEngine)
    assert (engine.config.device, engine.config.dtype) == ("cuda:1", "bfloat16")
    cpu = create_engine(TransformersPool(name="c"), tmp_path)
    assert isinstance(cpu, TransformersEngine)
    assert (cpu.config.device, cpu.config.dtype) == ("cpu", "float32")
    with pytest.raises(ValueError, match="device"):
        TransformersPool(name="x", device="gpu")
