"""A real model server on vLLM's async engine (`AsyncLLM`), imported only when started.

vLLM batches, schedules and samples; this adapter renders and tokenizes the prompt (the same
rendering as the transformers engine, so both see the same token ids), maps the request to
`SamplingParams` (per-request seed, stop strings, max tokens) and a `LoRARequest`, and streams
vLLM's deltas (`RequestOutputKind.DELTA`: text and token ids new since the last output).

Each request gets a small pump task that moves vLLM's outputs to the request's own queue, so
`abort` and `stop` can end a stream at once with finish='abort' even while vLLM is between
tokens: the engine puts an abort signal on the queue and cancels the pump (which makes vLLM
drop the request and free its slot).

Everything here except `VllmEngine.start` runs without vllm installed; the pure helpers
(`engine_kwargs`, `sampling_kwargs`, `finish_reason`, `lora_table`) are unit-tested on their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.config import VllmOptions
from services.inference.engines.base import (
    EngineError,
    EngineFinish,
    GenerationChunk,
    GenerationRequest,
    RequestRejectedError,
)
from services.inference.engines.streaming import ABORT, RequestStream, Signal, StreamingEngine

ModelLocator = Callable[[], Path]  # returns the local model directory (may prepare it first)
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- pure helpers


def engine_kwargs(
    model_path: Path, served_name: str, options: VllmOptions, capacity: int
) -> dict[str, Any]:
    """Keyword arguments for `AsyncEngineArgs`: the pool's options, its capacity as the
    number of sequences batched together unless set, then any raw `engine_args` on top."""
    kwargs: dict[str, Any] = {
        "model": str(model_path),
        "served_model_name": served_name,
        "tensor_parallel_size": options.tensor_parallel_size,
        "pipeline_parallel_size": options.pipeline_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "max_num_seqs": options.max_num_seqs or capacity,
        "dtype": options.dtype,
        "enforce_eager": options.enforce_eager,
        "seed": options.seed,
        "disable_log_stats": True,  # the platform reports its own metrics
        "enable_log_requests": False,
    }
    if options.max_model_len is not None:
        kwargs["max_model_len"] = options.max_model_len
    if options.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = options.max_num_batched_tokens
    if options.enable_lora:
        kwargs.update(
            enable_lora=True, max_loras=options.max_loras, max_lora_rank=options.max_lora_rank
        )
    kwargs.update(options.engine_args)
    return kwargs


def sampling_kwargs(request: GenerationRequest, max_tokens: int) -> dict[str, Any]:
    """Keyword arguments for `SamplingParams` (without `output_kind`, which needs vllm).

    Temperature 0 is greedy in vLLM; a seed gives the request its own generator, so its
    tokens do not depend on what else is in the batch.
    """
    return {
        "n": 1,
        "max_tokens": max_tokens,
        "temperature": max(request.temperature, 0.0),
        "top_p": request.top_p,
        "top_k": request.top_k if request.top_k and request.top_k > 0 else 0,  # 0: all tokens
        "seed": request.seed,
        "stop": [s for s in request.stop if s],
        "include_stop_str_in_output": False,
        "skip_special_tokens": True,
    }


def finish_reason(reason: str | None) -> EngineFinish:
    """vLLM's finish reason as ours; anything else (e.g. 'error') fails the request."""
    if reason in ("stop", "length", "abort"):
        return reason  # type: ignore[return-value]
    raise EngineError(f"vllm ended the request with finish reason {reason!r}")


def lora_table(paths: Mapping[str, str]) -> dict[str, tuple[int, str]]:
    """Adapter name -> (vLLM's integer LoRA id, path). Ids start at 1 and follow the sorted
    names, so they are stable for a given configuration."""
    return {name: (i, paths[name]) for i, name in enumerate(sorted(paths), start=1)}


# ---------------------------------------------------------------------- engine


@dataclass(slots=True)
class _Stream(RequestStream):
    pump: asyncio.Task[None] | None = None  # moves vLLM's outputs onto the queue


@dataclass(frozen=True, slots=True)
class _Vllm:
    """The vllm names this engine uses, bound when it starts."""

    llm: Any  # AsyncLLM
    sampling_params: Any  # SamplingParams
    delta: Any  # RequestOutputKind.DELTA
    lora_request: Any  # LoRARequest

    @property
    def max_model_len(self) -> int:
        return int(self.llm.model_config.max_model_len)


class VllmEngine(StreamingEngine[_Stream]):
    name = "vllm"

    def __init__(
        self,
        model: str,
        locate: ModelLocator,
        options: VllmOptions | None = None,
        capacity: int = 16,
    ) -> None:
        super().__init__()
        self.model = model
        self.options = options or VllmOptions()
        self.capacity = capacity
        self._locate = locate
        self._loras = lora_table(self.options.lora_paths) if self.options.enable_lora else {}
        self._vllm: _Vllm | None = None

    @property
    def vllm_config(self) -> Any:
        """vLLM's resolved `VllmConfig` while started (what it actually runs with), else None."""
        return None if self._vllm is None else self._vllm.llm.vllm_config

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._vllm is not None:
            return
        # Building the engine spawns vLLM's engine-core process and waits for it (seconds):
        # off the event loop. vLLM starts its asyncio output tasks lazily on the first request.
        box: list[_Vllm] = []
        await asyncio.to_thread(self._start_blocking, box)
        self._vllm = box.pop()
        self._accepting = True
        await self._warm_up()

    def _start_blocking(self, box: list[_Vllm]) -> None:
        """Build the engine into `box`. vllm keeps some frames of its lazy imports alive, and
        with them this frame and its callers': the engine is handed over in a list the caller
        empties, never as a local or return value, so stop() really lets it go."""
        if self.options.cpu_kvcache_space_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.options.cpu_kvcache_space_gib)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are local; never reach a hub
        from transformers import AutoTokenizer
        from vllm import SamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind
        from vllm.v1.engine.async_llm import AsyncLLM

        path = self._locate()
        missing = [name for name, (_, p) in self._loras.items() if not Path(p).is_dir()]
        if missing:
            raise EngineError(f"LoRA adapter directories not found for {missing}")
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        args = AsyncEngineArgs(**engine_kwargs(path, self.model, self.options, self.capacity))
        box.append(
            _Vllm(
                llm=AsyncLLM.from_engine_args(args),
                sampling_params=SamplingParams,
                delta=RequestOutputKind.DELTA,
                lora_request=LoRARequest,
            )
        )

    async def stop(self) -> None:
        self._accepting = False
        pumps = []
        for stream in list(self._streams.values()):
            stream.queue.put_nowait(ABORT)
            if stream.pump is not None:
                stream.pump.cancel()
                pumps.append(stream.pump)
        # Let vLLM see the cancellations (it aborts those requests) before it goes away.
        await asyncio.gather(*pumps, return_exceptions=True)
        bound, self._vllm = self._vllm, None
        if bound is not None:
            await asyncio.to_thread(bound.llm.shutdown)

    # ------------------------------------------------------------------ requests

    async def abort(self, request_id: str) -> None:
        for stream in self._streams_of(request_id):
            stream.queue.put_nowait(ABORT)
            if stream.pump is not None:
                stream.pump.cancel()  # vLLM drops it now, even if nobody reads on

    def _healthy(self) -> bool:
        bound = self._vllm
        return self._accepting and bound is not None and not bound.llm.errored

    def failure(self) -> str | None:
        bound = self._vllm
        if self._failure is None and bound is not None and bound.llm.errored:
            self._failure = "vllm's engine core died"  # seen before any request failed on it
        return self._failure

    def _lora(self, bound: _Vllm, adapter: str | None) -> Any:
        if adapter is None:
            return None
        entry = self._loras.get(adapter)
        if entry is None:
            raise RequestRejectedError(
                f"adapter {adapter!r} is not served here (have {sorted(self._loras)})"
            )
        lora_id, path = entry
        return bound.lora_request(lora_name=adapter, lora_int_id=lora_id, lora_path=path)

    async def _run(
        self, request: GenerationRequest, count: bool
    ) -> AsyncGenerator[GenerationChunk, None]:
        bound = self._vllm
        if bound is None or not self._accepting:
            raise EngineError("vllm engine is not running")
        prompt, max_tokens = self._encode(request, bound.max_model_len)
        lora = self._lora(bound, request.adapter)
        if max_tokens < 1:
            yield self._final(count, "", len(prompt), 0, "length")
            return
        params = bound.sampling_params(
            **sampling_kwargs(request, max_tokens), output_kind=bound.delta
        )
        internal = self._internal_id(request.request_id)
        stream = self._register(request.request_id, _Stream(internal))
        stream.pump = asyncio.create_task(self._pump(bound, stream, prompt, params, lora))
        try:
            async with aclosing(self._stream(stream, len(prompt), count)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self._forget(request.request_id, internal)
            stream.pump.cancel()  # no-op when it is done; else vLLM drops the request

    async def _pump(
        self, bound: _Vllm, stream: _Stream, prompt: list[int], params: Any, lora: Any
    ) -> None:
        """vLLM's outputs for one request onto its queue; a failure becomes a signal."""
        try:
            outputs = bound.llm.generate(
                {"prompt_token_ids": prompt}, params, stream.request_id, lora_request=lora
            )
            async for output in outputs:
                stream.queue.put_nowait(output)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"vllm failed the request: {type(exc).__name__}: {exc}"
            if bound.llm.errored:
                self._accepting = False
                self._failure = error
                log.error("vllm engine stopped accepting requests: %s", error)
            stream.queue.put_nowait(Signal(error))

    async def _stream(
        self, stream: _Stream, n_in: int, count: bool
    ) -> AsyncGenerator[GenerationChunk, None]:
        n_out = 0
        while True:
            item = await stream.queue.get()
            if isinstance(item, Signal):
                if item.error is not None:
                    raise item.exception()
                yield self._final(count, "", n_in, n_out, "abort")
                return
            completion = item.outputs[0]
            new = len(completion.token_ids)
            if new:
                stream.started = True
                n_out += new
                self._count_tokens(count, new)
            if item.finished or completion.finish_reason is not None:
                finish = finish_reason(completion.finish_reason)
                yield self._final(count, completion.text, n_in, n_out, finish)
                return
            if completion.text:  # vLLM holds text back while it may start a stop string
                yield GenerationChunk(completion.text, n_in, n_out)
