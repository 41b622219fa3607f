"""The engine contract: what the inference consumer needs from any model server."""

from __future__ import annotations

import abc
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from schemas.base import MAX_INT32, MAX_INT64, MAX_TOKENS, MIN_INT64

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


class RequestRejectedError(EngineError):
    """The engine cannot take this request (its parameters, its prompt): the request's fault,
    not the engine's, which serves on. Answered as `invalid_request`."""


def check_request(request: GenerationRequest) -> None:
    """Refuse, before it reaches a batch, what no engine can hold: a request that slipped past
    the schema must fail alone, never take the batch or the generation loop down with it."""
    problem = _problem(request)
    if problem is not None:
        raise RequestRejectedError(f"request {request.request_id[:64]!r}: {problem}")


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_float(value: object, low: float, high: float) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and low <= value <= high


def _problem(r: GenerationRequest) -> str | None:
    if not _is_int(r.max_tokens, 0, MAX_TOKENS):  # 0: finishes at once
        return f"max_tokens must be an integer in 0..{MAX_TOKENS}, got {r.max_tokens!r}"
    if not _is_float(r.temperature, 0.0, math.inf):
        return f"temperature must be finite and >= 0, got {r.temperature!r}"
    if not _is_float(r.top_p, math.ulp(0.0), 1.0):
        return f"top_p must be in (0, 1], got {r.top_p!r}"
    if r.top_k is not None and not _is_int(r.top_k, 0, MAX_INT32):
        return f"top_k must be an integer in 0..{MAX_INT32}, got {r.top_k!r}"
    if r.seed is not None and not _is_int(r.seed, MIN_INT64, MAX_INT64):
        return f"seed must be a 64-bit integer, got {r.seed!r}"
    if not all(isinstance(s, str) for s in r.stop):
        return "stop sequences must be strings"
    if not all(isinstance(m, str) for pair in r.messages for m in pair):
        return "messages must be (role, content) strings"
    return None


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

    def failure(self) -> str | None:
        """Why this engine can serve nothing more (its generation loop died), else None. The
        consumer then answers what is in flight and exits, so the process is restarted."""
        return None
