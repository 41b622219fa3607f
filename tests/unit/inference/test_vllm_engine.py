"""The vLLM engine's pure parts and its behaviour before start; vllm itself is not needed.

Its behaviour with a real model is checked by the engine contract suite in the vllm venv
(`make test-vllm`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llmops.config import POOL_ADAPTER, FakePool, VllmOptions, VllmPool
from services.inference.engines.base import EngineError
from services.inference.engines.vllm_engine import (
    VllmEngine,
    engine_kwargs,
    finish_reason,
    lora_table,
    sampling_kwargs,
)
from tests.engine_kit import collect, request


def test_engine_kwargs_carry_the_pool_options() -> None:
    options = VllmOptions(
        tensor_parallel_size=4,
        pipeline_parallel_size=2,
        gpu_memory_utilization=0.8,
        max_model_len=4096,
        max_num_batched_tokens=2048,
        dtype="bfloat16",
        enforce_eager=True,
        seed=7,
    )
    kwargs = engine_kwargs(Path("/models/m"), "m", options, capacity=32)
    assert kwargs == {
        "model": "/models/m",
        "served_model_name": "m",
        "tensor_parallel_size": 4,
        "pipeline_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "max_num_seqs": 32,  # the pool's capacity
        "dtype": "bfloat16",
        "enforce_eager": True,
        "seed": 7,
        "disable_log_stats": True,
        "enable_log_requests": False,
        "max_model_len": 4096,
        "max_num_batched_tokens": 2048,
    }


def test_engine_kwargs_defaults_lora_and_raw_args() -> None:
    plain = engine_kwargs(Path("/m"), "m", VllmOptions(), capacity=8)
    assert "max_model_len" not in plain and "enable_lora" not in plain  # vLLM's own defaults
    assert plain["max_num_seqs"] == 8
    options = VllmOptions(
        max_num_seqs=3,
        enable_lora=True,
        max_loras=2,
        max_lora_rank=8,
        engine_args={"kv_cache_dtype": "fp8", "max_num_seqs": 5},
    )
    kwargs = engine_kwargs(Path("/m"), "m", options, capacity=8)
    assert (kwargs["enable_lora"], kwargs["max_loras"], kwargs["max_lora_rank"]) == (True, 2, 8)
    assert kwargs["kv_cache_dtype"] == "fp8"
    assert kwargs["max_num_seqs"] == 5  # raw engine_args win over the modelled options


def test_sampling_kwargs() -> None:
    greedy = sampling_kwargs(request(max_tokens=99), max_tokens=40)
    assert greedy == {
        "n": 1,
        "max_tokens": 40,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "seed": None,
        "stop": [],
        "include_stop_str_in_output": False,
        "skip_special_tokens": True,
    }
    sampled = sampling_kwargs(
        request(temperature=0.7, top_p=0.9, top_k=40, seed=3, stop=("\n", "")), max_tokens=5
    )
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.9, 40)
    assert (sampled["seed"], sampled["stop"], sampled["max_tokens"]) == (3, ["\n"], 5)
    assert sampling_kwargs(request(top_k=-1, temperature=-1.0), 1)["top_k"] == 0
    assert sampling_kwargs(request(temperature=-1.0), 1)["temperature"] == 0.0


def test_finish_reason() -> None:
    assert [finish_reason(r) for r in ("stop", "length", "abort")] == ["stop", "length", "abort"]
    for odd in ("error", None, "repetition"):
        with pytest.raises(EngineError, match="finish reason"):
            finish_reason(odd)


def test_lora_ids_are_stable_and_start_at_one() -> None:
    table = lora_table({"sql": "/a/sql", "chat": "/a/chat", "math": "/a/math"})
    assert table == {"chat": (1, "/a/chat"), "math": (2, "/a/math"), "sql": (3, "/a/sql")}
    assert lora_table({}) == {}


def test_a_vllm_pool_with_adapters_needs_lora_and_a_path_for_each() -> None:
    with pytest.raises(ValidationError, match="enable_lora"):
        VllmPool(name="p", adapters=["sql"])
    with pytest.raises(ValidationError, match="lora_paths entry for \\['chat'\\]"):
        VllmPool(
            name="p",
            adapters=["sql", "chat"],
            vllm=VllmOptions(enable_lora=True, lora_paths={"sql": "/a/sql"}),
        )
    ok = VllmPool(
        name="p",
        adapters=["sql"],
        vllm=VllmOptions(enable_lora=True, lora_paths={"sql": "/a/sql"}),
    )
    assert ok.vllm.lora_paths == {"sql": "/a/sql"}
    # other engines' adapters are the router's concern
    assert FakePool(name="p", adapters=["sql"]).adapters == ["sql"]
    with pytest.raises(ValidationError):
        VllmOptions(max_lora_rank=12)  # not a rank vLLM supports
    with pytest.raises(ValidationError):
        VllmOptions(gpu_memory_utilization=1.5)


def test_options_from_settings_json() -> None:
    pool = POOL_ADAPTER.validate_python(
        {
            "name": "gpu-a100",
            "engine": "vllm",
            "model": "/models/llama",
            "vllm": {"tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        }
    )
    assert isinstance(pool, VllmPool)
    assert (pool.vllm.tensor_parallel_size, pool.vllm.pipeline_parallel_size) == (8, 2)


async def test_unstarted_engine_refuses_requests_and_stops_quietly() -> None:
    engine = VllmEngine("m", lambda: Path("/nonexistent"))
    assert engine.stats().extra["healthy"] == 0.0
    with pytest.raises(EngineError, match="not running"):
        await collect(engine, request(max_tokens=2))
    assert engine.stats().failed == 1
    await engine.abort("nobody")
    await engine.stop()
    await engine.stop()
