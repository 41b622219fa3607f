"""Shared helpers for the engine tests: engines over the tiny model, requests, stream collection.

`LLMOPS_TEST_ENGINES` (comma-separated) picks the engines the contract suite runs on: the main
venv runs fake and transformers; `make test-vllm` runs vllm in its own venv.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmops.config import VllmOptions
from services.inference.engines.base import Engine, GenerationChunk, GenerationRequest
from services.inference.engines.fake import FakeEngine, FakeEngineConfig
from services.inference.engines.transformers_engine import (
    TransformersEngine,
    TransformersEngineConfig,
)
from services.inference.engines.vllm_engine import VllmEngine
from services.inference.models import build_tiny_model, build_tiny_tokenizer, save_tiny_random

ENGINE_KINDS = tuple(
    kind for kind in os.environ.get("LLMOPS_TEST_ENGINES", "fake,transformers").split(",") if kind
)
TINY_CONFIG = TransformersEngineConfig(
    max_model_len=512, max_batch_tokens=256, max_batch_requests=16, kv_cache_tokens=8192
)
# vLLM on CPU: float32 like the transformers engine, no compilation (start in seconds).
TINY_VLLM = VllmOptions(
    dtype="float32", max_model_len=512, enforce_eager=True, cpu_kvcache_space_gib=1
)
_ids = itertools.count()


@functools.cache
def tiny_model_dir() -> Path:
    """The tiny model written once per test process, for engines that load from files."""
    root = Path(tempfile.mkdtemp(prefix="llmops-tiny-"))
    atexit.register(shutil.rmtree, root, True)
    return save_tiny_random(root / "tiny-random")


def make_engine(kind: str, fake: FakeEngineConfig | None = None) -> Engine:
    """An unstarted engine; the transformers one gets its own tiny model (built in ms), the
    vllm one loads the same weights from `tiny_model_dir()`."""
    if kind == "fake":
        return FakeEngine(model="fake-model", config=fake)
    if kind == "vllm":
        return VllmEngine("tiny-random", tiny_model_dir, TINY_VLLM, capacity=16)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    return TransformersEngine("tiny-random", lambda: (model, tokenizer), TINY_CONFIG)


def breakable_tiny_engine() -> tuple[TransformersEngine, Callable[[], None]]:
    """A tiny transformers engine, and a call after which its model's forward pass fails
    (a kernel failure stand-in: the engine's generation loop dies on its next step)."""
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    forward = model.forward
    broken = False

    def failing_forward(*args: object, **kwargs: object) -> object:
        if broken:
            raise RuntimeError("simulated kernel failure")
        return forward(*args, **kwargs)

    def break_model() -> None:
        nonlocal broken
        broken = True

    model.forward = failing_forward  # type: ignore[method-assign]
    engine = TransformersEngine("tiny-random", lambda: (model, tokenizer), TINY_CONFIG)
    return engine, break_model


def request(prompt: str = "Tell me about the broker", **kwargs: object) -> GenerationRequest:
    """A request with a fresh id; keyword arguments override GenerationRequest fields."""
    fields: dict[str, object] = {"max_tokens": 16}
    fields.update(kwargs)
    return GenerationRequest(f"req-{next(_ids)}", (("user", prompt),), **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Result:
    chunks: list[GenerationChunk]

    @property
    def text(self) -> str:
        return "".join(c.text for c in self.chunks)

    @property
    def final(self) -> GenerationChunk:
        return self.chunks[-1]


async def collect(engine: Engine, req: GenerationRequest) -> Result:
    return Result([chunk async for chunk in engine.generate(req)])


def assert_well_formed(chunks: Sequence[GenerationChunk]) -> None:
    """One final chunk, last; text only grows; usage counts consistent."""
    assert chunks, "a stream has at least its final chunk"
    assert [c.finish is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.text for c in chunks[:-1]), "non-final chunks carry new text"
    assert len({c.input_tokens for c in chunks}) == 1 and chunks[0].input_tokens > 0
    counts = [c.output_tokens for c in chunks]
    assert counts == sorted(counts) and counts[0] >= 0
