"""The inference consumer: one pool's topic -> engine (continuously batched) -> replies.

Each routed request becomes a task: the consumer keeps fetching while the engine works, taking
at most the pool's capacity (llmops/kafka: backpressure), and a record's offset is committed only
after its final result is acknowledged on the reply topic and on llm.responses.

A request the engine cannot take, or that fails in it, gets an error result of its own. An engine
whose generation loop dies serves nothing more: the requests it had get `engine_error` results,
the loop stops (records taken after the death are neither answered nor committed, so they are
served again) and raises EngineDiedError, and the process exits for the supervisor or Kubernetes
to start a fresh one, instead of staying up and unhealthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from opentelemetry import trace

from llmops.config import PoolConfig, Settings
from llmops.kafka.config import BusConfig
from llmops.kafka.consumer import ConsumerConfig, ConsumerLoop, Handler, RejectHook
from llmops.kafka.producer import Producer
from llmops.kafka.record import Record
from llmops.kafka.replies import (
    error_result,
    publish_result,
    rejection_replier,
    send_reply,
    settle_best_effort,
)
from llmops.telemetry import metrics
from llmops.telemetry.conventions import (
    genai_request_attributes,
    genai_response_attributes,
    genai_span_name,
    llmops_attributes,
)
from llmops.telemetry.spans import consumer_span
from schemas import (
    ErrorInfo,
    FinishReason,
    InferenceResult,
    ResponseChunk,
    RoutedRequest,
    Timings,
    Usage,
    utc_now,
)
from schemas.base import MAX_COST_USD
from schemas.topics import inference_group, inference_topic
from services.inference.engines.base import (
    Engine,
    EngineError,
    GenerationRequest,
    RequestRejectedError,
)
from services.inference.health import HealthWindow
from services.inference.heartbeat import Heartbeat

log = logging.getLogger(__name__)
tracer = trace.get_tracer("llmops.inference")
# How often a pool's loop looks whether its engine died (a field read: costs nothing).
ENGINE_WATCH_S = 0.2


class EngineDiedError(RuntimeError):
    """The pool's engine can serve nothing more: the process must be restarted."""


def group_id(pool: str) -> str:
    return inference_group(pool)


def generation_request(routed: RoutedRequest) -> GenerationRequest:
    sampling = routed.request.sampling
    return GenerationRequest(
        request_id=routed.request.request_id,
        messages=tuple((m.role, m.content) for m in routed.messages),
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        seed=sampling.seed,
        stop=tuple(sampling.stop),
        adapter=routed.request.adapter,
    )


def prompt_text(routed: RoutedRequest) -> str:
    return "\n".join(m.content for m in routed.messages)


class InferenceWorker:
    def __init__(
        self,
        settings: Settings,
        pool: PoolConfig,
        engine: Engine,
        producer: Producer,
        health: HealthWindow | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._engine = engine
        self._producer = producer
        self.health = health or HealthWindow(settings.health_window_s, time.monotonic())
        self.served = 0

    async def handle(self, record: Record) -> Any:
        consumed_at = time.monotonic()
        routed = record.decode(RoutedRequest, self._settings.max_message_bytes)
        return asyncio.create_task(self._serve(routed, record, consumed_at))

    async def _serve(self, routed: RoutedRequest, record: Record, consumed_at: float) -> None:
        request = routed.request
        failure = self._engine.failure()
        if failure is not None:  # unanswered, so never committed: the next instance serves it
            raise EngineDiedError(failure)
        with consumer_span(
            tracer,
            genai_span_name("chat", routed.model),
            record.headers,
            record.topic,
            record.partition,
            record.offset,
            attributes={
                **genai_request_attributes(
                    "chat",
                    self._pool.provider,
                    routed.model,
                    request.sampling.max_tokens,
                    request.sampling.temperature,
                ),
                **llmops_attributes(request_id=request.request_id, pool=self._pool.name),
            },
        ) as span:
            result = await self._generate(routed, consumed_at)
            self.health.record(
                time.monotonic(),
                result.timings.total_ms,
                result.usage.output_tokens,
                # A request refused for its own parameters says nothing of the pool's health.
                error=result.error is not None and result.error.kind != "invalid_request",
            )
            span.set_attributes(
                genai_response_attributes(
                    result.usage.input_tokens,
                    result.usage.output_tokens,
                    [result.finish_reason],
                    response_model=routed.model,
                )
            )
            if result.error is not None:
                span.set_status(trace.StatusCode.ERROR, result.error.message)
            metrics.observe_inference(
                self._pool.name,
                result.usage.input_tokens,
                result.usage.output_tokens,
                result.timings,
                result.error.kind if result.error is not None else "ok",
            )
            acks = await publish_result(self._producer, result, request.reply_to)
        await asyncio.gather(*acks)
        self.served += 1

    async def _generate(self, routed: RoutedRequest, consumed_at: float) -> InferenceResult:
        request = routed.request
        now = utc_now()
        if request.expired(now):
            return self._result(
                routed,
                "",
                "timeout",
                Usage(),
                Timings(),
                0,
                ErrorInfo(kind="deadline_exceeded", message="deadline passed before generation"),
            )
        deadline_s = (
            (request.deadline - now).total_seconds()
            if request.deadline
            else self._settings.default_deadline_s
        )
        started = time.monotonic()
        first_token_at: float | None = None
        text_parts: list[str] = []
        chunk_acks: list[asyncio.Future[Any]] = []
        usage = Usage()
        finish: FinishReason = "error"
        error: ErrorInfo | None = None
        seq = 0
        gen = generation_request(routed)
        try:
            async with asyncio.timeout(deadline_s):
                async for chunk in self._engine.generate(gen):
                    if chunk.text:
                        if first_token_at is None:
                            first_token_at = time.monotonic()
                        text_parts.append(chunk.text)
                        if request.stream and request.reply_to:
                            piece = ResponseChunk(
                                request_id=request.request_id, seq=seq, text=chunk.text
                            )
                            chunk_acks.append(
                                await send_reply(self._producer, request.reply_to, piece)
                            )
                            seq += 1
                    usage = Usage(
                        input_tokens=chunk.input_tokens, output_tokens=chunk.output_tokens
                    )
                    if chunk.finish is not None:
                        finish = chunk.finish
        except TimeoutError:
            await self._engine.abort(request.request_id)
            finish = "timeout"
            error = ErrorInfo(
                kind="deadline_exceeded", message=f"deadline hit after {deadline_s:.1f}s"
            )
        except RequestRejectedError as exc:
            error = ErrorInfo(kind="invalid_request", message=str(exc)[:4096])
        except EngineError as exc:
            error = ErrorInfo(kind="engine_error", message=str(exc)[:4096])
        except Exception as exc:  # an engine bug fails this request, never the consumer
            log.exception("engine %s failed on %s", self._engine.name, request.request_id)
            error = ErrorInfo(kind="engine_error", message=f"{type(exc).__name__}: {exc}"[:4096])
        done = time.monotonic()
        if chunk_acks and await settle_best_effort(chunk_acks):
            log.warning("some streamed chunks of %s were not delivered", request.request_id)
        ttft = (first_token_at or done) - started
        decode_tokens = max(usage.output_tokens - 1, 0)
        timings = Timings(
            queue_ms=(started - consumed_at) * 1000,
            ttft_ms=ttft * 1000,
            tpot_ms=((done - (first_token_at or done)) / decode_tokens * 1000)
            if decode_tokens
            else 0.0,
            total_ms=(done - consumed_at) * 1000,
        )
        return self._result(routed, "".join(text_parts), finish, usage, timings, seq, error)

    def _result(
        self,
        routed: RoutedRequest,
        text: str,
        finish: FinishReason,
        usage: Usage,
        timings: Timings,
        chunks: int,
        error: ErrorInfo | None,
    ) -> InferenceResult:
        request = routed.request
        return InferenceResult(
            request_id=request.request_id,
            tenant=request.tenant,
            app=request.app,
            text=text,
            finish_reason=finish,
            usage=usage,
            timings=timings,
            chunks=chunks,
            pool=self._pool.name,
            model=routed.model,
            engine=self._engine.name,
            prompt_name=routed.prompt_name,
            prompt_version=routed.prompt_version,
            experiment=routed.experiment,
            variant=routed.variant,
            route_reason=routed.route_reason,
            attributes=request.attributes,
            cost_usd=min(usage.total_tokens / 1000 * self._pool.cost_per_1k_tokens, MAX_COST_USD),
            error=error,
            prompt_text=prompt_text(routed),
            context=request.context,
            response_format=request.response_format,
        )


class PoolLoop(ConsumerLoop):
    """A pool's consumer loop with its heartbeat beside it for as long as it runs, and a watch
    on its engine: when the engine dies, the loop stops and raises EngineDiedError."""

    def __init__(
        self,
        bus: BusConfig,
        config: ConsumerConfig,
        handler: Handler,
        producer: Producer,
        *,
        heartbeat: Heartbeat,
        engine: Engine,
        on_reject: RejectHook | None = None,
    ) -> None:
        super().__init__(bus, config, handler, producer, on_reject, companions=[heartbeat])
        self.heartbeat = heartbeat
        self.engine = engine

    async def run(self) -> None:
        watch = asyncio.create_task(self._watch_engine(), name="engine-watch")
        try:
            await super().run()  # raises the first task failure (EngineDiedError among them)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        failure = self.engine.failure()
        if failure is not None:
            raise EngineDiedError(failure)

    async def _watch_engine(self) -> None:
        # Polled: engines learn of their death on their own threads or from vLLM's client.
        while (failure := self.engine.failure()) is None:  # noqa: ASYNC110
            await asyncio.sleep(ENGINE_WATCH_S)
        # What the engine had is failing with error results now; run() drains, commits what
        # was answered, and raises.
        log.error("pool engine died (%s): draining, then exiting to be restarted", failure)
        self.stop()


def build_worker(
    settings: Settings,
    pool: PoolConfig,
    engine: Engine,
    producer: Producer,
    heartbeat: Heartbeat | None = None,
) -> tuple[InferenceWorker, PoolLoop]:
    """The worker and its consumer loop; the loop runs `heartbeat` (a new one by default)."""
    bus = BusConfig.from_settings(settings, client_id=f"llmops-inference-{pool.name}")
    heartbeat = heartbeat or Heartbeat(settings, pool, producer, engine)
    worker = InferenceWorker(settings, pool, engine, producer, heartbeat.health)
    loop = PoolLoop(
        bus,
        ConsumerConfig.from_settings(
            settings,
            topics=[inference_topic(pool.name).name],
            group_id=group_id(pool.name),
            service=f"inference-{pool.name}",
            max_in_flight=pool.capacity,
            max_poll_records=pool.capacity,
        ),
        worker.handle,
        producer,
        heartbeat=heartbeat,
        engine=engine,
        on_reject=rejection_replier(producer),
    )
    return worker, loop


__all__ = [
    "EngineDiedError",
    "InferenceWorker",
    "PoolLoop",
    "build_worker",
    "error_result",
    "group_id",
]
