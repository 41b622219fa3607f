"""What the engines over a batching model server share: one asyncio stream per request.

A model server (transformers' continuous batching manager, vLLM's AsyncLLM) runs many requests
at once under ids of its own. `StreamingEngine` keeps, per request, a queue that the server's
outputs (or the engine's own signals: abort, failure) are put on, the map from the caller's id
to the server's ids (one caller id may run more than once), the counters behind `stats()`, and
the prompt encoding both real engines use, so they tokenize alike. A subclass starts and stops
its server and turns one request into chunks in `_run`.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from services.inference.engines.base import (
    Engine,
    EngineError,
    EngineFinish,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    RequestRejectedError,
    check_request,
)
from services.inference.engines.text import render_plain

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True, slots=True)
class Signal:
    """Put on a request's queue by the engine itself: abort (abort/stop) or failure."""

    error: str | None = None
    rejected: bool = False  # the failure is the request's own fault (RequestRejectedError)

    def exception(self) -> EngineError:
        assert self.error is not None
        return RequestRejectedError(self.error) if self.rejected else EngineError(self.error)


ABORT = Signal()


@dataclass(slots=True)
class RequestStream:
    request_id: str  # the server's id for it: the caller's id plus a counter
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    started: bool = False  # produced its first token


StreamT = TypeVar("StreamT", bound=RequestStream)


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[tuple[str, str]]) -> str:
    """The tokenizer's chat template when it has one, else one line per message (base models)."""
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            [{"role": role, "content": content} for role, content in messages],
            tokenize=False,
            add_generation_prompt=True,
        )
        return str(rendered)
    return render_plain(messages)


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[tuple[str, str]]
) -> list[int]:
    """Token ids of the rendered prompt; a template brings its own special tokens."""
    templated = bool(getattr(tokenizer, "chat_template", None))
    text = render_prompt(tokenizer, messages)
    ids = tokenizer(text, add_special_tokens=not templated)["input_ids"]
    return [int(i) for i in ids]


class StreamingEngine(Engine, Generic[StreamT]):
    """Per-request streams, ids, stats and prompt encoding over a batching model server."""

    def __init__(self) -> None:
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._streams: dict[str, StreamT] = {}
        self._by_request: dict[str, set[str]] = {}  # caller's id -> the server's ids
        self._ids = itertools.count()
        self._accepting = False
        self._failure: str | None = None  # set when the server's loop died
        self._stats = EngineStats()

    # ------------------------------------------------------------------ for subclasses

    @abc.abstractmethod
    def _run(
        self, request: GenerationRequest, count: bool
    ) -> AsyncGenerator[GenerationChunk, None]:
        """The request's chunks; `count` False for the engine's own warm-up request."""

    def _healthy(self) -> bool:
        return self._accepting

    async def _warm_up(self) -> None:
        """One token through the whole path, so the first real request is not the slow one."""
        request = GenerationRequest("__warmup__", (("user", "warm up"),), max_tokens=1)
        async for _ in self._generate(request, count=False):
            pass

    def _encode(self, request: GenerationRequest, max_model_len: int) -> tuple[list[int], int]:
        """Prompt ids and the output budget left to the request."""
        tokenizer = self._tokenizer
        assert tokenizer is not None
        try:
            prompt = encode_prompt(tokenizer, request.messages)
        except Exception as exc:  # a template rejecting the messages is the request's fault
            raise RequestRejectedError(f"cannot render the prompt: {exc}") from exc
        budget = max_model_len - len(prompt)
        if budget < 1:
            raise RequestRejectedError(
                f"prompt has {len(prompt)} tokens; this engine takes at most {max_model_len - 1}"
            )
        return prompt, min(request.max_tokens, budget)

    def _register(self, request_id: str, stream: StreamT) -> StreamT:
        self._streams[stream.request_id] = stream
        self._by_request.setdefault(request_id, set()).add(stream.request_id)
        return stream

    def _internal_id(self, request_id: str) -> str:
        return f"{request_id}#{next(self._ids)}"

    def _streams_of(self, request_id: str) -> list[StreamT]:
        found = (self._streams.get(i) for i in self._by_request.get(request_id, ()))
        return [s for s in found if s is not None]

    def _forget(self, request_id: str, internal: str) -> None:
        self._streams.pop(internal, None)
        ids = self._by_request.get(request_id)
        if ids is not None:
            ids.discard(internal)
            if not ids:
                del self._by_request[request_id]

    def _final(
        self, count: bool, text: str, n_in: int, n_out: int, finish: EngineFinish
    ) -> GenerationChunk:
        if count:
            if finish == "abort":
                self._stats.aborted += 1
            else:
                self._stats.completed += 1
        return GenerationChunk(text, n_in, n_out, finish)

    def _count_tokens(self, count: bool, new: int) -> None:
        if count:
            self._stats.output_tokens += new

    # ------------------------------------------------------------------ Engine

    def failure(self) -> str | None:
        return self._failure

    def stats(self) -> EngineStats:
        s = self._stats
        return EngineStats(
            running=sum(1 for st in self._streams.values() if st.started),
            waiting=sum(1 for st in self._streams.values() if not st.started),
            completed=s.completed,
            aborted=s.aborted,
            failed=s.failed,
            output_tokens=s.output_tokens,
            extra={"healthy": 1.0 if self._healthy() else 0.0},
        )

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        return self._generate(request, count=True)

    async def _generate(
        self, request: GenerationRequest, count: bool
    ) -> AsyncGenerator[GenerationChunk, None]:
        try:
            check_request(request)
            # aclosing: a caller leaving early must run the inner generator's cleanup now.
            async with aclosing(self._run(request, count)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except EngineError:
            if count:
                self._stats.failed += 1
            raise
