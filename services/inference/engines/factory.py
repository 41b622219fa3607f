"""Build the engine a pool asks for. Heavy imports happen only for the kind chosen."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from llmops.config import FakePool, PoolConfig, TransformersPool, VllmPool
from services.inference.engines.base import Engine

_MAX_KV_CACHE_TOKENS = 65_536


class EngineUnavailableError(NotImplementedError):
    """The pool names an engine kind this build cannot run."""


def create_engine(pool: PoolConfig, data_dir: Path) -> Engine:
    """An unstarted engine for `pool`; its `model` is the pool's model name, its `name` the kind."""
    if isinstance(pool, FakePool):
        from services.inference.engines.fake import FakeEngine, FakeEngineConfig

        timings = FakeEngineConfig(ttft_ms=pool.fake_ttft_ms, tpot_ms=pool.fake_tpot_ms)
        return FakeEngine(model=pool.model, config=timings)
    if isinstance(pool, TransformersPool):
        import torch

        from services.inference.engines.transformers_engine import (
            TransformersEngine,
            TransformersEngineConfig,
        )
        from services.inference.models import load_model

        spec, device = pool.model, pool.device
        base = TransformersEngineConfig()
        # Room for `capacity` full-length requests, bounded (gemma-3-270m: ~18 KB per token).
        kv_tokens = min(pool.capacity * base.max_model_len, _MAX_KV_CACHE_TOKENS)
        config = replace(
            base,
            max_batch_requests=pool.capacity,
            kv_cache_tokens=kv_tokens,
            device=device,
            # float32 suits CPUs without native bf16 (see TransformersEngineConfig); GPUs do bf16.
            dtype=base.dtype if device == "cpu" else "bfloat16",
        )
        dtype = getattr(torch, config.dtype) if config.dtype else None  # load it so: no 2nd copy
        return TransformersEngine(
            model=pool.model, load=lambda: load_model(spec, data_dir, dtype, device), config=config
        )
    if isinstance(pool, VllmPool):
        from services.inference.engines.vllm_engine import VllmEngine

        spec = pool.model
        return VllmEngine(
            model=pool.model,
            locate=lambda: model_directory(spec, data_dir),
            options=pool.vllm,
            capacity=pool.capacity,
        )
    raise EngineUnavailableError(f"pool {pool.name!r}: unknown engine kind {pool.engine!r}")


def model_directory(spec: str, data_dir: Path) -> Path:
    """A model directory for engines that load from files (vLLM): the in-process tiny model
    is written once under `<data_dir>/models/` (atomically: replicas may race)."""
    from services.inference.models import TINY_RANDOM, prepare_model, save_tiny_random

    if spec != TINY_RANDOM:
        path = prepare_model(spec, data_dir)
        if path is None:
            raise EngineUnavailableError(
                f"model {spec!r} is built in memory for the transformers engine; "
                "engines that load from files cannot serve it"
            )
        return path
    target = data_dir / "models" / TINY_RANDOM
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{TINY_RANDOM}.", dir=target.parent))
    try:
        save_tiny_random(work)
        try:
            os.replace(work, target)
        except OSError:  # another replica got there first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
