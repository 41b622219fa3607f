"""Build the engine a pool asks for. Heavy imports happen only for the kind chosen."""

from __future__ import annotations

from pathlib import Path

from llmops.config import PoolConfig
from services.inference.engines.base import Engine


class EngineUnavailableError(NotImplementedError):
    """The pool names an engine kind this build cannot run."""


def create_engine(pool: PoolConfig, data_dir: Path) -> Engine:
    """An unstarted engine for `pool`; its `model` is the pool's model name, its `name` the kind."""
    if pool.engine == "fake":
        from services.inference.engines.fake import FakeEngine, FakeEngineConfig

        config = FakeEngineConfig(ttft_ms=pool.fake_ttft_ms, tpot_ms=pool.fake_tpot_ms)
        return FakeEngine(model=pool.model, config=config)
    if pool.engine == "transformers":
        from services.inference.engines.transformers_engine import (
            TransformersEngine,
            TransformersEngineConfig,
        )
        from services.inference.models import load_model

        spec = pool.model
        return TransformersEngine(
            model=pool.model,
            load=lambda: load_model(spec, data_dir),
            config=TransformersEngineConfig(max_batch_requests=max(pool.capacity, 1)),
        )
    if pool.engine == "vllm":
        raise EngineUnavailableError(
            f"pool {pool.name!r}: the vllm engine arrives with issue 3; "
            "use 'transformers' or 'fake' for now"
        )
    raise EngineUnavailableError(f"pool {pool.name!r}: unknown engine kind {pool.engine!r}")
