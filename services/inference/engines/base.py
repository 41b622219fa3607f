"""The engine contract: what the inference consumer needs from any model server."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

EngineFinish = Literal["stop", "length", "abort"]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    messages: tuple[tuple[str, str], ...]  # (role, content), rendered by the engine's template
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    adapter: str | None = None


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """New text since the previous chunk; counts are cumulative. The last one has `finish`."""

    text: str
    input_tokens: int
    output_tokens: int
    finish: EngineFinish | None = None


@dataclass(slots=True)
class EngineStats:
    running: int = 0
    waiting: int = 0
    completed: int = 0
    aborted: int = 0
    failed: int = 0  # requests that ended with EngineError
    output_tokens: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class EngineError(RuntimeError):
    """The engine failed a request; the consumer answers it with an error result."""


class Engine(abc.ABC):
    """A model server. Implementations batch concurrent `generate` calls themselves."""

    name: str
    model: str

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release the model. Streams still running end with finish='abort'; later
        `generate` calls raise EngineError."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the output. Ends with a chunk whose `finish` is set."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop a running request; its stream ends with finish='abort'."""

    @abc.abstractmethod
    def stats(self) -> EngineStats: ...
