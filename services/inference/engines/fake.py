"""A model-free engine: deterministic text from the prompt, with simulated timings.

A token is a whitespace-separated word. The output cycles through the prompt's words (the
seed picks where it starts; temperature, top_p and top_k are ignored), so a test can predict it
exactly. With `tpot_ms=0` it costs almost nothing per token and streams in bursts of `burst`
tokens, which is how the platform's own overhead is measured.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from services.inference.engines.base import (
    Engine,
    EngineError,
    EngineFinish,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    check_request,
)
from services.inference.engines.text import StopScanner, count_words, render_plain

FAIL_MARKER = "[[fail]]"  # a prompt containing it fails before its first token
FAIL_MID_MARKER = "[[fail-mid]]"  # ... or after its first chunk
# A prompt containing it kills the engine, as a real one whose generation loop dies: every
# request in flight fails, and the engine serves nothing more (fault injection for tests).
DIE_MARKER = "[[engine-dies]]"
_FILLER = ("lorem", "ipsum", "dolor", "sit", "amet")  # output for a prompt without words


@dataclass(frozen=True, slots=True)
class FakeEngineConfig:
    ttft_ms: float = 0.0
    tpot_ms: float = 0.0
    burst: int = 32  # tokens per chunk when tpot_ms == 0 (few chunks: cheap)
    failure_rate: float = 0.0  # share of requests failing before their first token
    failure_seed: int = 0


def fake_words(request: GenerationRequest) -> list[str]:
    """The word cycle a request's output is taken from."""
    words = render_plain(request.messages).split() or list(_FILLER)
    start = (request.seed or 0) % len(words)
    return words[start:] + words[:start]


class FakeEngine(Engine):
    name = "fake"

    def __init__(self, model: str = "fake", config: FakeEngineConfig | None = None) -> None:
        self.model = model
        self.config = config or FakeEngineConfig()
        self._rng = random.Random(self.config.failure_seed)
        self._aborts: dict[str, set[asyncio.Event]] = {}
        self._stats = EngineStats()
        self._started = False
        self._failure: str | None = None

    async def start(self) -> None:
        self._started = True
        self._failure = None

    def failure(self) -> str | None:
        return self._failure

    def die(self, reason: str) -> None:
        """The engine's loop died: requests in flight fail with EngineError, later ones are
        refused, and `failure()` says why."""
        self._failure = reason
        self._started = False
        for events in self._aborts.values():
            for event in events:
                event.set()

    async def stop(self) -> None:
        self._started = False
        for events in self._aborts.values():
            for event in events:
                event.set()

    def stats(self) -> EngineStats:
        s = self._stats
        return EngineStats(
            running=s.running,
            waiting=s.waiting,
            completed=s.completed,
            aborted=s.aborted,
            failed=s.failed,
            output_tokens=s.output_tokens,
            extra={"healthy": 1.0 if self._started else 0.0},
        )

    async def abort(self, request_id: str) -> None:
        for event in self._aborts.get(request_id, ()):
            event.set()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if not self._started:
            raise EngineError(self._failure or "fake engine is not started")
        aborted = asyncio.Event()
        self._aborts.setdefault(request.request_id, set()).add(aborted)
        self._stats.waiting += 1
        running = False
        try:
            check_request(request)
            prompt = render_plain(request.messages)
            if DIE_MARKER in prompt:
                self.die("fake engine: generation loop died (requested)")
            if FAIL_MARKER in prompt or self._rng.random() < self.config.failure_rate:
                raise EngineError("fake engine: failure requested")
            input_tokens = count_words(prompt)
            if await _wait(self.config.ttft_ms, aborted):
                self._raise_if_dead()
                yield self._finish("", input_tokens, 0, "abort")
                return
            self._stats.waiting -= 1
            self._stats.running += 1
            running = True
            fail_mid = FAIL_MID_MARKER in prompt
            async with aclosing(self._emit(request, input_tokens, aborted, fail_mid)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except EngineError:
            self._stats.failed += 1
            raise
        finally:
            if running:
                self._stats.running -= 1
            else:
                self._stats.waiting -= 1
            events = self._aborts.get(request.request_id)
            if events is not None:
                events.discard(aborted)
                if not events:
                    del self._aborts[request.request_id]

    async def _emit(
        self, request: GenerationRequest, input_tokens: int, aborted: asyncio.Event, fail_mid: bool
    ) -> AsyncGenerator[GenerationChunk, None]:
        words = fake_words(request)
        scanner = StopScanner(request.stop)
        per_chunk = 1 if self.config.tpot_ms > 0 else max(1, self.config.burst)
        produced = 0
        while produced < request.max_tokens:
            n = min(per_chunk, request.max_tokens - produced)
            if await _wait(self.config.tpot_ms * n, aborted):
                self._raise_if_dead()
                yield self._finish(scanner.flush(), input_tokens, produced, "abort")
                return
            text = ""
            for _ in range(n):  # token by token, so a stop is counted at the token completing it
                text += scanner.feed((" " if produced else "") + words[produced % len(words)])
                produced += 1
                self._stats.output_tokens += 1
                if scanner.stopped:
                    yield self._finish(text, input_tokens, produced, "stop")
                    return
            if text:
                yield GenerationChunk(text, input_tokens, produced)
            if fail_mid:
                raise EngineError("fake engine: failure requested mid-stream")
        yield self._finish(scanner.flush(), input_tokens, produced, "length")

    def _raise_if_dead(self) -> None:
        if self._failure is not None:
            raise EngineError(self._failure)

    def _finish(
        self, text: str, input_tokens: int, output_tokens: int, finish: EngineFinish
    ) -> GenerationChunk:
        if finish == "abort":
            self._stats.aborted += 1
        else:
            self._stats.completed += 1
        return GenerationChunk(text, input_tokens, output_tokens, finish)


async def _wait(ms: float, aborted: asyncio.Event) -> bool:
    """Sleep `ms` (yield only, when 0) unless aborted first; return whether it was aborted."""
    if aborted.is_set():
        return True
    if ms <= 0:
        await asyncio.sleep(0)
        return aborted.is_set()
    try:
        await asyncio.wait_for(aborted.wait(), ms / 1000.0)
    except TimeoutError:
        return False
    return True
