"""Shared helpers for the engine tests: engines over the tiny model, requests, stream collection."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from services.inference.engines.base import Engine, GenerationChunk, GenerationRequest
from services.inference.engines.fake import FakeEngine, FakeEngineConfig
from services.inference.engines.transformers_engine import (
    TransformersEngine,
    TransformersEngineConfig,
)
from services.inference.models import build_tiny_model, build_tiny_tokenizer

ENGINE_KINDS = ("fake", "transformers")
TINY_CONFIG = TransformersEngineConfig(
    max_model_len=512, max_batch_tokens=256, max_batch_requests=16, kv_cache_tokens=8192
)
_ids = itertools.count()


def make_engine(kind: str, fake: FakeEngineConfig | None = None) -> Engine:
    """An unstarted engine; the transformers one gets its own tiny model (built in ms)."""
    if kind == "fake":
        return FakeEngine(model="fake-model", config=fake)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    return TransformersEngine("tiny-random", lambda: (model, tokenizer), TINY_CONFIG)


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
