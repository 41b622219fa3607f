"""The Python SDK for apps: request/reply over Kafka.

    async with LLMOpsClient(app="support") as client:
        result = await client.generate(messages=[{"role": "user", "content": "Hi"}])
        async for piece in client.stream(prompt="support-answer", variables={...}):
            print(piece, end="")

Each client owns a private reply topic (partition 0; the README's reply protocol); replies are
matched by request id, so duplicates from at-least-once delivery are dropped here and the app
sees exactly one final result.

Tracing: each request is one CLIENT span `chat [<model>]` from the send to the final reply
(the latency the app saw), the root of the request's trace; its child PRODUCER span
`send llm.requests` covers the publish and travels in the record's `traceparent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from opentelemetry import trace
from opentelemetry.trace import Span, TracerProvider

from llmops.kafka.config import BusConfig
from llmops.kafka.deadletter import classify_decode_error
from llmops.kafka.fetchwait import AdaptiveWait, FetchWaitTuner
from llmops.kafka.producer import Producer
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.topics import delete_topics, ensure_topics
from llmops.telemetry.conventions import (
    genai_request_attributes,
    genai_response_attributes,
    genai_span_name,
    llmops_attributes,
)
from llmops.telemetry.propagation import header_value
from llmops.telemetry.ratelog import RejectionLog
from llmops.telemetry.spans import producer_span, record_failure, start_client_span
from schemas import (
    ChatMessage,
    InferenceResult,
    PromptRef,
    PromptRequest,
    ResponseChunk,
    SamplingParams,
    utc_now,
)
from schemas.feedback import Feedback, Thumbs
from schemas.topics import EVENT_TYPE_HEADER, FEEDBACK, REQUESTS, reply_topic

if TYPE_CHECKING:  # the settings module needs more than the SDK installs
    from llmops.config import Settings

log = logging.getLogger(__name__)
TRACER_NAME = "llmops.sdk"
# gen_ai.provider.name of our spans: the platform is the provider the app talks to.
PROVIDER = "llmops"

MessageLike = ChatMessage | Mapping[str, str]


class LLMOpsError(RuntimeError):
    """The platform answered the request with an error."""

    def __init__(self, result: InferenceResult) -> None:
        error = result.error
        super().__init__(
            f"request {result.request_id} failed: "
            f"{error.kind if error else result.finish_reason}: {error.message if error else ''}"
        )
        self.result = result


class ReplyTimeout(TimeoutError):
    """No final reply arrived in time."""


@dataclass
class _Pending:
    result: asyncio.Future[InferenceResult]
    stream: asyncio.Queue[ResponseChunk | InferenceResult] | None = None
    next_seq: int = 0
    held: dict[int, ResponseChunk] = field(default_factory=dict)
    span: Span | None = None  # the request's root span, ended with the final result
    sent_at: float = field(default_factory=time.monotonic)


class LLMOpsClient:
    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        app: str = "default",
        tenant: str = "default",
        client_id: str | None = None,
        timeout_s: float = 120.0,
        fetch_max_wait_ms: int | None = None,
        fetch_idle_wait_ms: int | None = None,
        fetch_quiet_after_s: float | None = None,
        security: KafkaSecurity | None = None,
        replication_factor: int | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """What is not given comes from the environment (and LLMOPS_CONFIG), read here once:
        an app configures its client the way it configures the platform. A service or a
        test holding its settings uses `from_settings`. `security`: SASL/TLS of every client
        it makes; `replication_factor`: its reply topic's, when it creates it."""
        given = (bootstrap_servers, fetch_max_wait_ms, fetch_idle_wait_ms, fetch_quiet_after_s)
        if None in (*given, security, replication_factor):
            from llmops.config import Settings

            env = Settings()
            if bootstrap_servers is None:
                bootstrap_servers = env.kafka_bootstrap_servers
            if fetch_max_wait_ms is None:
                fetch_max_wait_ms = env.fetch_max_wait_ms
            if fetch_idle_wait_ms is None:
                fetch_idle_wait_ms = env.fetch_idle_wait_ms
            if fetch_quiet_after_s is None:
                fetch_quiet_after_s = env.fetch_quiet_after_s
            if security is None:
                security = KafkaSecurity.from_settings(env)
            if replication_factor is None:
                replication_factor = env.topic_replication_factor
        assert bootstrap_servers is not None and fetch_max_wait_ms is not None
        assert fetch_idle_wait_ms is not None and fetch_quiet_after_s is not None
        assert security is not None and replication_factor is not None
        self._security = security
        self._replication_factor = replication_factor
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._fetch_idle = (fetch_idle_wait_ms, fetch_quiet_after_s)
        self.bootstrap_servers = bootstrap_servers
        self.app = app
        self.tenant = tenant
        self.client_id = client_id or f"{app}-{uuid.uuid4().hex[:12]}"
        self.reply_topic = reply_topic(self.client_id).name
        self.timeout_s = timeout_s
        # No signer: an app never holds the deployment key (llmops/kafka/signing.py).
        self._producer = Producer(
            BusConfig(bootstrap_servers, client_id=f"sdk-{self.client_id}", security=security)
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, _Pending] = {}
        self.duplicates = 0
        # Records on the reply topic that are no reply: a line per kind at a bounded rate.
        self._rejections = RejectionLog(log, f"sdk-{self.client_id}")
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> LLMOpsClient:
        """A client on the broker, with the security, reply topic replication and fetch waits
        of `settings`; `options` are the constructor's keywords (app, tenant, timeout_s, ...)."""
        return cls(
            settings.kafka_bootstrap_servers,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            fetch_idle_wait_ms=settings.fetch_idle_wait_ms,
            fetch_quiet_after_s=settings.fetch_quiet_after_s,
            security=KafkaSecurity.from_settings(settings),
            replication_factor=settings.topic_replication_factor,
            **options,
        )

    async def __aenter__(self) -> LLMOpsClient:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        try:
            await asyncio.to_thread(
                ensure_topics,
                self.bootstrap_servers,
                [reply_topic(self.client_id)],
                replication_factor=self._replication_factor,
                security=self._security,
            )
        except Exception as exc:
            raise ConnectionError(
                f"cannot reach Kafka at {self.bootstrap_servers} ({exc}); is the platform "
                "running (`llmops up`) and KAFKA_BOOTSTRAP_SERVERS right?"
            ) from exc
        await self._producer.start()
        # A fresh private topic: read it from the start, no group needed.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"sdk-{self.client_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            **self._security.client_kwargs(),  # SASL/TLS as the producer's
        )
        await self._consumer.start()
        partition = TopicPartition(self.reply_topic, 0)
        self._consumer.assign([partition])
        await self._consumer.seek_to_beginning(partition)
        self._reader = asyncio.create_task(self._read_replies())

    async def close(self, delete_reply_topic: bool = False) -> None:
        """Stop reading and sending. The reply topic is kept by default: deleting it while a
        late or replayed reply is on its way lets the broker auto-create it again."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._consumer is not None:
            await self._consumer.stop()
        await self._producer.stop()
        for pending in self._pending.values():
            if not pending.result.done():
                pending.result.cancel()
                _end_span(pending, "cancelled", "client closed before the reply")
        if delete_reply_topic:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    delete_topics,
                    self.bootstrap_servers,
                    [self.reply_topic],
                    security=self._security,
                )

    # --- requests -------------------------------------------------------------------------

    def build_request(
        self,
        messages: Sequence[MessageLike] | None = None,
        *,
        prompt: str | None = None,
        variables: Mapping[str, str] | None = None,
        label: str | None = None,
        version: int | None = None,
        stream: bool = False,
        timeout_s: float | None = None,
        **options: Any,
    ) -> PromptRequest:
        """A PromptRequest addressed to this client. `options`: PromptRequest fields or sampling."""
        sampling_fields = set(SamplingParams.model_fields)
        sampling = {k: options.pop(k) for k in list(options) if k in sampling_fields}
        return PromptRequest(
            messages=[ChatMessage.model_validate(m) for m in messages] if messages else None,
            prompt=PromptRef(
                name=prompt, label=label, version=version, variables=dict(variables or {})
            )
            if prompt
            else None,
            sampling=SamplingParams(**sampling),
            stream=stream,
            reply_to=self.reply_topic,
            app=options.pop("app", self.app),
            tenant=options.pop("tenant", self.tenant),
            deadline=utc_now() + timedelta(seconds=timeout_s or self.timeout_s),
            **options,
        )

    def expect(self, request_id: str, stream: bool = False) -> _Pending:
        """Wait for replies to `request_id`, for requests published by other means (raw JSON)."""
        pending = _Pending(
            asyncio.get_running_loop().create_future(), asyncio.Queue() if stream else None
        )
        self._pending[request_id] = pending
        return pending

    async def submit(self, request: PromptRequest, stream: bool = False) -> _Pending:
        """Publish a request; the returned handle resolves with its final result."""
        if request.reply_to != self.reply_topic:
            request = request.model_copy(update={"reply_to": self.reply_topic})
        pending = self.expect(request.request_id, stream)
        pending.span = self._request_span(request)
        try:
            with (
                trace.use_span(pending.span, end_on_exit=False),
                producer_span(
                    self._tracer,
                    REQUESTS.name,
                    key=request.sticky_key,
                    attributes=llmops_attributes(request_id=request.request_id),
                ),
            ):
                ack = await self._producer.send_event(
                    REQUESTS.name, request, key=request.sticky_key
                )
            await ack
        except BaseException as exc:
            self._pending.pop(request.request_id, None)
            _end_span(pending, type(exc).__name__, f"not sent: {exc}")
            raise
        return pending

    def _request_span(self, request: PromptRequest) -> Span:
        """The request's root: a GenAI CLIENT span, open until the final reply arrives."""
        sampling = request.sampling
        attributes = genai_request_attributes(
            "chat",
            PROVIDER,
            request.model or "",
            sampling.max_tokens,
            sampling.temperature,
            sampling.top_p,
            top_k=sampling.top_k,
            seed=sampling.seed,
            stop_sequences=sampling.stop,
            stream=request.stream,
        )
        attributes.update(
            llmops_attributes(
                request_id=request.request_id,
                app=request.app,
                tenant=request.tenant,
                prompt_name=request.prompt.name if request.prompt is not None else None,
            )
        )
        return start_client_span(
            self._tracer, genai_span_name("chat", request.model or ""), attributes
        )

    async def feedback(
        self,
        request_id: str,
        *,
        score: float | None = None,
        thumbs: Thumbs | bool | None = None,
        label: str | None = None,
        comment: str | None = None,
        user_id: str | None = None,
    ) -> Feedback:
        """Report an outcome of a response (by its request id): a score (the app's scale,
        within +-1000), thumbs up/down (or True/False), a free-form label, any of them with
        an optional comment. Sent on llm.feedback keyed by the request id, and joined there to
        the response's experiment variant (`llmops experiments report`). Returns the event
        once the broker acknowledged it; a value out of bounds raises ValidationError."""
        if isinstance(thumbs, bool):
            thumbs = "up" if thumbs else "down"
        event = Feedback(
            request_id=request_id,
            score=score,
            thumbs=thumbs,
            label=label,
            comment=comment,
            user_id=user_id,
            tenant=self.tenant,
            app=self.app,
        )
        await (await self._producer.send_event(FEEDBACK.name, event, key=request_id))
        return event

    async def generate(
        self, messages: Sequence[MessageLike] | None = None, **kwargs: Any
    ) -> InferenceResult:
        """Send one request and wait for its final result; raises LLMOpsError on an error reply."""
        request = self.build_request(messages, **kwargs)
        return await self.run(request, kwargs.get("timeout_s"))

    async def run(self, request: PromptRequest, timeout_s: float | None = None) -> InferenceResult:
        """`generate` for a request built beforehand (its id known before the send)."""
        pending = await self.submit(request)
        result = await self.wait(request.request_id, pending, timeout_s or self.timeout_s)
        if result.error is not None:
            raise LLMOpsError(result)
        return result

    async def wait(self, request_id: str, pending: _Pending, timeout_s: float) -> InferenceResult:
        try:
            return await asyncio.wait_for(asyncio.shield(pending.result), timeout_s)
        except TimeoutError as exc:
            _end_span(pending, "timeout", f"no reply within {timeout_s:.0f}s")
            raise ReplyTimeout(
                f"no reply to request {request_id} within {timeout_s:.0f}s on {self.reply_topic}; "
                "check the platform is running (`llmops topics`) and its pools are up"
            ) from exc
        finally:
            self._pending.pop(request_id, None)

    async def stream(
        self, messages: Sequence[MessageLike] | None = None, **kwargs: Any
    ) -> AsyncIterator[str]:
        """Yield text pieces in order as they are generated; ends with the final result."""
        request = self.build_request(messages, stream=True, **kwargs)
        async for piece in self.stream_request(request, kwargs.get("timeout_s")):
            yield piece

    async def stream_request(
        self, request: PromptRequest, timeout_s: float | None = None
    ) -> AsyncIterator[str]:
        """`stream` for a request built beforehand."""
        timeout_s = timeout_s or self.timeout_s
        if not request.stream:
            request = request.model_copy(update={"stream": True})
        pending = await self.submit(request, stream=True)
        assert pending.stream is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                try:
                    item = await asyncio.wait_for(pending.stream.get(), deadline - loop.time())
                except TimeoutError as exc:
                    _end_span(pending, "timeout", f"stream stalled past {timeout_s:.0f}s")
                    raise ReplyTimeout(
                        f"stream of request {request.request_id} stalled past {timeout_s:.0f}s"
                    ) from exc
                if isinstance(item, InferenceResult):
                    if item.error is not None:
                        raise LLMOpsError(item)
                    return
                yield item.text
        finally:
            self._pending.pop(request.request_id, None)

    # --- replies --------------------------------------------------------------------------

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        # Waiting replies count as traffic: the reader is quick while any is owed, and
        # slows to settings' idle wait only when nothing is (llmops/kafka/fetchwait.py).
        policy = AdaptiveWait(self._fetch_max_wait_ms, *self._fetch_idle)
        tuner = FetchWaitTuner(self._consumer, policy, time.monotonic)
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            tuner.after_poll(sum(map(len, batches.values())) + len(self._pending))
            for records in batches.values():
                for record in records:
                    self._take_reply(record)

    def _take_reply(self, record: ConsumerRecord[Any, Any]) -> None:
        """One reply record; anything on the topic that is no reply is skipped, logged at a
        bounded rate (no traceback: it is input, not a bug), and never ends the reader."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            self._on_reply(record.value, header_value(record.headers, EVENT_TYPE_HEADER))
        except (ValueError, RecursionError) as error:  # pydantic's ValidationError included
            rejected = classify_decode_error(record.value or b"", error)
            self._rejections.rejected(rejected.kind, rejected.reason, where)
        except Exception as error:  # a bug: its traceback once per interval
            self._rejections.failed("processing_error", str(error), where, error)

    def _on_reply(self, value: bytes | None, event_type: str | None) -> None:
        if event_type == "ResponseChunk":
            chunk = ResponseChunk.model_validate_json(value or b"")
            pending = self._pending.get(chunk.request_id)
            if pending is not None and pending.stream is not None:
                self._deliver_chunk(pending, chunk)
            return
        result = InferenceResult.model_validate_json(value or b"")
        pending = self._pending.get(result.request_id)
        if pending is None or pending.result.done():
            self.duplicates += 1
            return
        pending.result.set_result(result)
        _end_span_with_result(pending, result)
        if pending.stream is not None:
            pending.stream.put_nowait(result)

    def _deliver_chunk(self, pending: _Pending, chunk: ResponseChunk) -> None:
        # Replays can resend chunks: keep order by seq, drop what was delivered already.
        if chunk.seq < pending.next_seq or pending.result.done():
            self.duplicates += 1
            return
        pending.held[chunk.seq] = chunk
        if pending.next_seq == 0 and 0 in pending.held and pending.span is not None:
            pending.span.set_attributes(
                genai_response_attributes(time_to_first_chunk_s=time.monotonic() - pending.sent_at)
            )
        while pending.next_seq in pending.held:
            assert pending.stream is not None
            pending.stream.put_nowait(pending.held.pop(pending.next_seq))
            pending.next_seq += 1


def _end_span_with_result(pending: _Pending, result: InferenceResult) -> None:
    span, pending.span = pending.span, None
    if span is None:
        return
    span.set_attributes(
        genai_response_attributes(
            result.usage.input_tokens,
            result.usage.output_tokens,
            [result.finish_reason],
            response_model=result.model or None,
            response_id=result.request_id,
        )
    )
    span.set_attributes(llmops_attributes(pool=result.pool, variant=result.variant))
    if result.error is not None:
        record_failure(span, result.error.kind, result.error.message)
    span.end()


def _end_span(pending: _Pending, error_type: str, message: str) -> None:
    """End a request's root span that got no final reply (timeout, close, failed send)."""
    span, pending.span = pending.span, None
    if span is None:
        return
    record_failure(span, error_type, message)
    span.end()
