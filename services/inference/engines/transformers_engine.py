"""A real model on CPU with transformers continuous batching, bridged to asyncio.

One persistent ContinuousBatchingManager runs its generation loop in its own thread. A reader
thread takes the manager's outputs and hands them, one batch per wake-up, to the event loop
with `call_soon_threadsafe`; there each output goes to its request's asyncio queue. `generate`
turns the cumulative token lists into text deltas (incremental decoding), cuts at stop strings
and cancels the rest of the request in the manager.

Per-request sampling (temperature, top_p, top_k, seed) is honoured in full: see sampling.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.inference.engines.base import (
    EngineError,
    EngineFinish,
    GenerationChunk,
    GenerationRequest,
    RequestRejectedError,
)
from services.inference.engines.streaming import (
    ABORT,
    RequestStream,
    Signal,
    StreamingEngine,
)
from services.inference.engines.text import IncrementalDecoder, StopScanner

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from transformers.generation.continuous_batching import ContinuousBatchingManager
    from transformers.generation.continuous_batching.requests import GenerationOutput

ModelLoader = Callable[[], "tuple[PreTrainedModel, PreTrainedTokenizerBase]"]
_CONTEXT_TOKENS = 4  # prompt ids decoded with the output, so its first token is spaced right
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TransformersEngineConfig:
    max_model_len: int = 2048  # prompt + output tokens of one request
    max_batch_tokens: int = 256  # tokens per forward pass (long prompts are prefilled in slices)
    max_batch_requests: int = 16  # requests decoded together
    page_size: int = 64  # tokens per KV-cache page
    kv_cache_tokens: int = 16_384  # KV-cache capacity over all running requests
    attn_implementation: str = "sdpa"  # or "paged|eager"
    # Compute dtype, cast after loading if the model differs; None keeps the stored one. float32
    # by default: on CPUs without native bf16 (AVX2 only, as here) bf16 matmuls over a batch of
    # rows are several times slower than float32; measured on gemma-3-270m, 8 streams: ~1.5x
    # the tokens/s and ~3x faster prefill, for ~0.5 GB more memory.
    dtype: str | None = "float32"
    # torch intra-op threads for this process; None keeps torch's default (OMP_NUM_THREADS or
    # the core count). On a small machine shared with other busy processes, 1 is much faster:
    # measured on 2 shared cores at load ~6, gemma-3-270m: 1 thread 18 tok/s over 8 streams,
    # 2 threads 2 tok/s (every parallel op waits for a descheduled worker thread).
    threads: int | None = None
    # torch device the model runs on ("cpu", "cuda", "cuda:1"); it is moved there after loading
    # (a loader may also build it there directly), and the KV cache is allocated there.
    device: str = "cpu"
    stop_timeout_s: float = 10.0


def resolve_device(name: str) -> torch.device:
    """The torch device `name` names, or EngineError when this machine does not have it."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise EngineError(f"unknown torch device {name!r}: {exc}") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise EngineError(f"device {name!r}: only 'cpu' and 'cuda[:N]' are supported")
    if not torch.cuda.is_available():
        raise EngineError(
            f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA GPU "
            "(a CPU-only torch build, or no GPU/driver on this machine); use device='cpu'"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise EngineError(f"device {name!r} asked for, but only {count} CUDA GPU(s) are visible")
    return torch.device("cuda", device.index if device.index is not None else 0)


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every id that ends an output: the generation config's and the tokenizer's."""
    found: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(int(v) for v in value)
    return {i for i in found if i >= 0}


class TransformersEngine(StreamingEngine[RequestStream]):
    name = "transformers"

    def __init__(
        self, model: str, load: ModelLoader, config: TransformersEngineConfig | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.config = config or TransformersEngineConfig()
        self._load = load
        self._hf_model: PreTrainedModel | None = None
        self._manager: ContinuousBatchingManager | None = None
        self._eos: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None
        self._closing = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._manager is not None:
            return
        self._loop = asyncio.get_running_loop()
        if self.config.threads is not None:
            import torch

            # On this thread: sets the process-wide count that new threads pick up, and this
            # thread's own OpenMP setting (so what torch reports here is what it uses).
            torch.set_num_threads(self.config.threads)
        await asyncio.to_thread(self._start_blocking)
        self._accepting = True
        await self._warm_up()

    def _start_blocking(self) -> None:
        import torch
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        from services.inference.engines.sampling import PerRequestSampling

        cfg = self.config
        device = resolve_device(cfg.device)  # before loading: fail fast, not after minutes
        model, tokenizer = self._load()
        wanted = getattr(torch, cfg.dtype) if cfg.dtype is not None else model.dtype
        if model.dtype != wanted or model.device != device:
            torch.nn.Module.to(model, device=device, dtype=wanted)  # in place
        self._hf_model, self._tokenizer = model, tokenizer
        self._eos = eos_ids(model, tokenizer)
        if model.config._attn_implementation != cfg.attn_implementation:
            model.set_attn_implementation(cfg.attn_implementation)
        generation = GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=False,  # the token is drawn by PerRequestSampling; argmax reads it
            max_new_tokens=cfg.max_model_len,
            eos_token_id=sorted(self._eos) or -1,
            pad_token_id=tokenizer.pad_token_id,
        )
        cb_config = ContinuousBatchingConfig(
            page_size=cfg.page_size,
            num_blocks=max(1, -(-cfg.kv_cache_tokens // cfg.page_size)),
            max_batch_tokens=cfg.max_batch_tokens,
            max_requests_per_batch=cfg.max_batch_requests,
            max_memory_percent=0.5,
            auto_switch_to_flash=False,  # no flash kernels on CPU; keep what was asked for
            allow_block_sharing=True,
            use_async_batching=False,
        )
        hf_model: Any = model  # nn.Module's __getattr__ hides the mixin's methods from mypy
        manager = hf_model.init_continuous_batching(
            generation_config=generation, continuous_batching_config=cb_config
        )
        manager.logit_processor = PerRequestSampling(on_invalid=self._invalid_from_loop)
        # Started from a daemon thread, the generation thread is a daemon too: a consumer that
        # dies without calling stop() still exits instead of hanging on a non-daemon thread.
        starter = threading.Thread(target=manager.start, daemon=True, name="cb-start")
        starter.start()
        starter.join()
        self._manager = manager
        self._closing.clear()
        self._reader = threading.Thread(target=self._read_outputs, daemon=True, name="cb-reader")
        self._reader.start()

    async def stop(self) -> None:
        self._accepting = False
        for stream in list(self._streams.values()):
            stream.queue.put_nowait(ABORT)
        manager, self._manager = self._manager, None
        if manager is None:
            return
        self._closing.set()
        await asyncio.to_thread(self._stop_blocking, manager)

    def _stop_blocking(self, manager: ContinuousBatchingManager) -> None:
        manager.stop(block=True, timeout=self.config.stop_timeout_s, hard_stop=True)
        manager.destroy()
        if self._reader is not None:
            self._reader.join(timeout=self.config.stop_timeout_s)
            self._reader = None

    # ------------------------------------------------------------------ outputs (reader thread)

    def _read_outputs(self) -> None:
        """Move outputs from the manager's queue to the event loop, a batch per wake-up."""
        manager, loop = self._manager, self._loop
        assert manager is not None and loop is not None
        while not self._closing.is_set():
            first = manager.get_result(timeout=0.1)
            if first is None:
                fatal = manager.background_thread_status.fatal_error
                if fatal is not None:
                    reason = f"generation loop died: {type(fatal).__name__}: {fatal}"
                    with contextlib.suppress(RuntimeError):  # a closed loop hears nothing
                        loop.call_soon_threadsafe(self._fail_all, reason[:1024])
                    return
                continue
            batch = [first]
            while (more := manager.get_result(timeout=0)) is not None:
                batch.append(more)
            try:
                loop.call_soon_threadsafe(self._dispatch, batch)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return

    def _dispatch(self, batch: list[GenerationOutput]) -> None:
        for output in batch:
            stream = self._streams.get(output.request_id)
            if stream is not None:  # outputs of cancelled requests are dropped
                stream.queue.put_nowait(output)

    def _fail_all(self, reason: str) -> None:
        self._accepting = False
        self._failure = reason
        for stream in list(self._streams.values()):
            stream.queue.put_nowait(Signal(reason))
        log.error("transformers engine stopped accepting requests: %s", reason)

    def _invalid_from_loop(self, internal: str, reason: str) -> None:
        """From the generation thread: a request's knobs could not be read; fail it alone."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop hears nothing
                loop.call_soon_threadsafe(self._fail_one, internal, reason)

    def _fail_one(self, internal: str, reason: str) -> None:
        stream = self._streams.get(internal)
        if stream is not None:
            stream.queue.put_nowait(Signal(reason, rejected=True))

    # ------------------------------------------------------------------ requests

    async def abort(self, request_id: str) -> None:
        for stream in self._streams_of(request_id):
            stream.queue.put_nowait(ABORT)

    async def _run(
        self, request: GenerationRequest, count: bool
    ) -> AsyncGenerator[GenerationChunk, None]:
        manager = self._manager
        if manager is None or not self._accepting:
            raise EngineError("transformers engine is not running")
        prompt, max_tokens = self._encode(request, self.config.max_model_len)
        if max_tokens < 1:
            yield self._final(count, "", len(prompt), 0, "length")
            return
        try:
            sampling = _sampling(request)
        except ValueError as exc:
            raise RequestRejectedError(str(exc)) from exc
        internal = self._internal_id(request.request_id)
        stream = self._register(request.request_id, RequestStream(internal))
        finished = False
        try:
            added = manager.add_request(
                prompt,
                request_id=internal,
                max_new_tokens=max_tokens,
                streaming=True,
                **sampling,
            )
            if added is None:
                raise EngineError("transformers engine refused the request (stopping or failed)")
            async with aclosing(self._stream(stream, request, prompt, count)) as chunks:
                async for chunk in chunks:
                    finished = chunk.finish is not None
                    yield chunk
        finally:
            self._forget(request.request_id, internal)
            if not finished and self._manager is not None:
                manager.cancel_request(internal)  # caller went away or failed: free the slot

    async def _stream(
        self,
        stream: RequestStream,
        request: GenerationRequest,
        prompt: list[int],
        count: bool,
    ) -> AsyncGenerator[GenerationChunk, None]:
        tokenizer = self._tokenizer
        assert tokenizer is not None
        decoder = IncrementalDecoder(
            lambda ids: str(tokenizer.decode(list(ids), skip_special_tokens=True)),
            context=prompt[-_CONTEXT_TOKENS:],
        )
        scanner = StopScanner(request.stop)
        seen: list[int] = []
        n_in = len(prompt)
        while True:
            output, signal = _latest(stream.queue, await stream.queue.get())
            if output is not None:
                if output.error is not None:
                    raise EngineError(f"generation failed: {output.error}")
                new = [int(t) for t in output.generated_tokens[len(seen) :]]
                if new:
                    stream.started = True
                    seen.extend(new)
                    self._count_tokens(count, len(new))
                text = scanner.feed(decoder.push(new))
                if scanner.stopped:
                    self._cancel(stream.request_id)
                    yield self._final(count, text, n_in, len(seen), "stop")
                    return
                if output.is_finished():
                    eos = bool(seen) and seen[-1] in self._eos
                    text += _tail(decoder, scanner)
                    finish: EngineFinish = "stop" if eos or scanner.stopped else "length"
                    yield self._final(count, text, n_in, len(seen), finish)
                    return
                if text and signal is None:
                    yield GenerationChunk(text, n_in, len(seen))
            if signal is not None:
                if signal.error is not None:
                    raise signal.exception()
                self._cancel(stream.request_id)
                tail = (text if output is not None else "") + _tail(decoder, scanner)
                yield self._final(count, tail, n_in, len(seen), "abort")
                return

    def _cancel(self, internal: str) -> None:
        if self._manager is not None:
            self._manager.cancel_request(internal)


def _latest(
    queue: asyncio.Queue[GenerationOutput | Signal], item: GenerationOutput | Signal
) -> tuple[GenerationOutput | None, Signal | None]:
    """Coalesce what is queued: outputs are cumulative, so only the newest matters (a loop that
    fell behind catches up in one step); a signal is acted on after the output before it."""
    output: GenerationOutput | None = None
    signal: Signal | None = None
    while True:
        if isinstance(item, Signal):
            signal = signal or item
        elif signal is None:  # outputs after an abort (e.g. failed by a stopping manager) are moot
            output = item
        if queue.empty():
            return output, signal
        item = queue.get_nowait()


def _tail(decoder: IncrementalDecoder, scanner: StopScanner) -> str:
    """The text held back at the end of an output: partial characters, then stop prefixes."""
    text = scanner.feed(decoder.flush())
    return text if scanner.stopped else text + scanner.flush()


def _sampling(request: GenerationRequest) -> dict[str, Any]:
    from services.inference.engines.sampling import sampling_kwargs

    # Without a seed a sampled request still needs one: a fresh random one.
    seed = request.seed if request.seed is not None else secrets.randbits(31)
    return sampling_kwargs(request.temperature, request.top_p, request.top_k, seed)
